"""Logistic-regression fusion (pyspeaker/scoring/calibration.py, ``pyspeaker fuse``): weights come from
the validation trials only, a useless system gets ~0 weight, and the fused EER beats each input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from pyspeaker.metrics import compute_eer
from pyspeaker.scoring.calibration import cross_validated_fusion, fit_linear_llr, train_calibration, train_fusion


def _systems(n_tgt, n_non, seed):
    """Two informative systems with independent errors (d' 2 and 1.5, different scales and offsets)
    and a third that is pure noise; [n, 3] target and non-target scores."""
    rng = np.random.default_rng(seed)

    def scores(shift):
        n = n_tgt if shift else n_non
        a = 2.0 * shift + rng.normal(0, 1, n)
        b = 0.3 * (1.5 * shift + rng.normal(0, 1, n)) - 4.0
        noise = rng.normal(5, 2, n)
        return np.stack([a, b, noise], axis=1)

    return scores(1), scores(0)


def test_calibration_is_fusion_of_one_input():
    tgt, non = _systems(2000, 8000, 0)
    cal = train_calibration(tgt[:, 1], non[:, 1])
    w, b = fit_linear_llr(tgt[:, 1:2], non[:, 1:2])
    assert (cal.scale, cal.offset) == (pytest.approx(w[0], rel=1e-12), pytest.approx(b, rel=1e-12))


def test_useless_system_gets_no_weight_and_fusion_beats_each_input():
    tgt, non = _systems(5000, 20000, 1)
    fusion = train_fusion(tgt, non)
    # the noise system's weight, per unit of its spread, is ~0 next to the informative ones'
    w = np.abs(np.array(fusion.weights)) * np.concatenate([tgt, non]).std(axis=0)
    assert w[2] < 0.05 * min(w[0], w[1]), fusion.weights
    # the optimal weights of the two informative systems are d'/sigma: 2 and 1.5 / 0.3 = 5
    assert fusion.weights[0] == pytest.approx(2.0, rel=0.08) and fusion.weights[1] == pytest.approx(5.0, rel=0.08)
    test_tgt, test_non = _systems(5000, 20000, 2)   # held-out trials
    fused = compute_eer(fusion.apply(test_tgt), fusion.apply(test_non))[0]
    singles = [compute_eer(test_tgt[:, k], test_non[:, k])[0] for k in range(3)]
    # d' 2 and 1.5 fuse to sqrt(2^2 + 1.5^2) = 2.5: EER Phi(-1.25) = 10.6%, against 15.9% and 22.7%
    assert fused == pytest.approx(0.106, abs=0.01) and fused < min(singles) - 0.04, (fused, singles)


def _write(path, enroll, test, values):
    path.write_text("".join(f"{e} {t} {v:.6f}\n" for e, t, v in zip(enroll, test, values)))


def test_fuse_command_learns_from_validation_trials_only(tmp_path):
    tgt, non = _systems(300, 900, 3)
    x = np.concatenate([tgt, non])
    labels = np.r_[np.ones(len(tgt), bool), np.zeros(len(non), bool)]
    enroll = [f"e{i}" for i in range(len(x))]
    test = [f"t{i}" for i in range(len(x))]
    (tmp_path / "valid.trials").write_text("".join(f"{e} {t} {'target' if y else 'nontarget'}\n"
                                                   for e, t, y in zip(enroll, test, labels)))
    for k in range(2):
        _write(tmp_path / f"valid{k}.txt", enroll, test, x[:, k])
    tt, tn = _systems(200, 600, 4)
    y = np.concatenate([tt, tn])
    test_labels = np.r_[np.ones(len(tt), bool), np.zeros(len(tn), bool)]
    (tmp_path / "test.trials").write_text("".join(f"a{i} b{i} {'target' if l else 'nontarget'}\n"
                                                  for i, l in enumerate(test_labels)))

    def fuse(run):
        for k in range(2):
            _write(tmp_path / f"test{k}.txt", [f"a{i}" for i in range(len(y))], [f"b{i}" for i in range(len(y))],
                   y[:, k] * (1 + run))   # the test scores differ between the runs
        out = tmp_path / f"run{run}"
        out.mkdir()
        run_cli("fuse", "train", "--scores", tmp_path / "valid0.txt", "--scores", tmp_path / "valid1.txt",
                "--name", "a", "--name", "b", "--trials", tmp_path / "valid.trials", "--out", out / "fusion.json",
                check=True)
        run_cli("fuse", "apply", "--scores", tmp_path / "test0.txt", "--scores", tmp_path / "test1.txt",
                "--trials", tmp_path / "test.trials", "--fusion", out / "fusion.json", "--out", out / "scores.txt",
                check=True)
        return json.loads((out / "fusion.json").read_text()), out

    first, out0 = fuse(0)
    second, out1 = fuse(1)
    assert first == second   # identical weights: the test scores never enter the fit
    assert first["type"] == "fusion" and first["systems"] == ["a", "b"] and len(first["weights"]) == 2
    lines = (out0 / "scores.txt").read_text().splitlines()
    assert len(lines) == 800 and lines[0].split()[:2] == ["a0", "b0"]
    llr = np.array([float(line.split()[2]) for line in lines])
    np.testing.assert_allclose(llr, y[:, :2] @ np.array(first["weights"]) + first["offset"], atol=1e-5)  # inputs written to 6 decimals
    assert json.loads((out0 / "scores.json").read_text())["calibrated"] is True
    metrics = run_cli("compute-metrics", "--scores", out0 / "scores.txt", "--trials", tmp_path / "test.trials",
                      "--out", out0 / "metrics.json", check=True)
    m = json.loads((out0 / "metrics.json").read_text())
    assert m["calibrated"] and 0 < m["cllr"] < 1 and "act_dcf" in m, metrics.stdout

    wrong = run_cli("fuse", "apply", "--scores", tmp_path / "test0.txt", "--trials", tmp_path / "test.trials",
                    "--fusion", out0 / "fusion.json", "--out", tmp_path / "x.txt")
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines()[-1] == (f"error: {out0 / 'fusion.json'} fuses 2 systems, but 1 "
                                                     f"--scores files were given")


def test_cross_validated_fusion_scores_each_fold_with_the_other_folds_weights():
    tgt, non = _systems(400, 1600, 5)
    x = np.concatenate([tgt, non])
    labels = np.r_[np.ones(len(tgt), bool), np.zeros(len(non), bool)]
    oof = cross_validated_fusion(x, labels, folds=4, seed=3)
    fold = np.random.default_rng(3).permutation(len(x)) % 4
    for f in range(4):   # each fold's llrs are the fusion of the other three folds, applied to it
        train = fold != f
        ref = train_fusion(x[train & labels], x[train & ~labels]).apply(x[fold == f])
        np.testing.assert_allclose(oof[fold == f], ref, rtol=1e-12)
    # in-sample llrs differ from out-of-fold ones (the fold's own trials are not in its fit)
    in_sample = train_fusion(x[labels], x[~labels]).apply(x)
    assert np.abs(oof - in_sample).max() > 1e-3
    with pytest.raises(Exception, match="fold 1 of 2 leaves no target"):
        cross_validated_fusion(x[:1], labels[:1], folds=2)


def test_fuse_train_cv_out_writes_out_of_fold_scores_of_its_trials(tmp_path):
    tgt, non = _systems(200, 600, 6)
    x = np.concatenate([tgt, non])
    labels = np.r_[np.ones(len(tgt), bool), np.zeros(len(non), bool)]
    (tmp_path / "valid.trials").write_text("".join(f"e{i} t{i} {'target' if y else 'nontarget'}\n"
                                                   for i, y in enumerate(labels)))
    for k in range(2):
        _write(tmp_path / f"valid{k}.txt", [f"e{i}" for i in range(len(x))], [f"t{i}" for i in range(len(x))],
               x[:, k])
    args = ["fuse", "train", "--scores", tmp_path / "valid0.txt", "--scores", tmp_path / "valid1.txt",
            "--trials", tmp_path / "valid.trials", "--out", tmp_path / "fusion.json"]
    run_cli(*args, "--cv-out", tmp_path / "cv.txt", "--cv-folds", "3", check=True)
    lines = (tmp_path / "cv.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [[f"e{i}", f"t{i}"] for i in range(len(x))]
    written = np.array([float(line.split()[2]) for line in lines])
    xr = np.round(x[:, :2], 6)   # the scores files hold 6 decimals
    np.testing.assert_allclose(written, cross_validated_fusion(xr, labels, folds=3), atol=2e-5)
    sidecar = json.loads((tmp_path / "cv.json").read_text())
    assert sidecar["calibrated"] is True and sidecar["cross_validated_folds"] == 3
    # --cv-out may not be one of the inputs: refused before anything is written
    (tmp_path / "fusion.json").unlink()
    bad = run_cli(*args, "--cv-out", tmp_path / "valid1.txt")
    assert bad.returncode == 1 and "--cv-out" in bad.stderr and "valid1.txt" in bad.stderr, bad.stderr
    assert not (tmp_path / "fusion.json").exists()
