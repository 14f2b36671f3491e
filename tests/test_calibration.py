"""Linear calibration recovers a known affine map; Cllr, min Cllr and actual DCF; ``pyspeaker calibrate``
and ``compute-metrics --calibrated`` end to end."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from pyspeaker.errors import DataError
from pyspeaker.metrics import act_dcf, bayes_threshold, cllr, min_cllr
from pyspeaker.scoring.calibration import Calibration, train_calibration


def _gaussian_scores(n_tgt=100_000, n_non=200_000, seed=0):
    """Raw scores whose true LLR is a known affine function of them.

    In the 'llr domain' targets are N(mu1, s^2) and non-targets N(mu0, s^2), so the LLR of x is
    (mu1 - mu0) / s^2 * x - (mu1^2 - mu0^2) / (2 s^2). The raw score is r = (x - c) / k, hence
    llr(r) = A r + B with A = k (mu1 - mu0) / s^2 and B = (mu1 - mu0) c / s^2 - (mu1^2 - mu0^2) / (2 s^2).
    """
    mu1, mu0, s, c, k = 2.0, -1.0, 1.5, 0.4, 3.0
    rng = np.random.default_rng(seed)
    x_tgt, x_non = rng.normal(mu1, s, n_tgt), rng.normal(mu0, s, n_non)
    a_true = k * (mu1 - mu0) / s ** 2
    b_true = (mu1 - mu0) * c / s ** 2 - (mu1 ** 2 - mu0 ** 2) / (2 * s ** 2)
    return (x_tgt - c) / k, (x_non - c) / k, a_true, b_true


@pytest.mark.parametrize("p_target", [0.5, 0.01])
def test_calibration_recovers_known_affine_map(p_target):
    tgt, non, a_true, b_true = _gaussian_scores()
    cal = train_calibration(tgt, non, p_target=p_target)
    assert cal.scale == pytest.approx(a_true, rel=0.03)
    assert cal.offset == pytest.approx(b_true, abs=0.03 * max(1.0, abs(b_true)))
    assert (cal.num_target, cal.num_nontarget, cal.p_target) == (100_000, 200_000, p_target)
    # the calibrated scores are (nearly) as good as the true LLRs
    llr_t, llr_n = cal.apply(tgt), cal.apply(non)
    true_t, true_n = a_true * tgt + b_true, a_true * non + b_true
    assert cllr(llr_t, llr_n) == pytest.approx(cllr(true_t, true_n), abs=2e-3)


def test_calibration_fixes_a_badly_scaled_system():
    tgt, non, _, _ = _gaussian_scores(20_000, 20_000, seed=1)
    bad_t, bad_n = 10 * tgt + 5, 10 * non + 5  # over-confident and shifted
    cal = train_calibration(bad_t, bad_n)
    assert cllr(cal.apply(bad_t), cal.apply(bad_n)) < 0.5 * cllr(bad_t, bad_n)
    # a monotone map cannot beat min Cllr, and a linear one gets close to it here
    assert min_cllr(bad_t, bad_n) <= cllr(cal.apply(bad_t), cal.apply(bad_n)) < min_cllr(bad_t, bad_n) + 0.01


def test_calibration_separable_classes_stays_finite():
    cal = train_calibration([2.0, 3.0, 4.0], [-1.0, 0.0, 1.0])
    assert math.isfinite(cal.scale) and cal.scale > 0 and math.isfinite(cal.offset)


def _objective(cal, tgt, non, p_target=0.5):
    """The prior-weighted cross-entropy train_calibration minimises, of the raw scores."""
    lt, ln = cal.apply(tgt) + math.log(p_target / (1 - p_target)), cal.apply(non) + math.log(p_target / (1 - p_target))
    return p_target * np.mean(np.logaddexp(0, -lt)) + (1 - p_target) * np.mean(np.logaddexp(0, ln))


def test_line_search_never_accepts_a_worse_step(monkeypatch):
    rng = np.random.default_rng(0)
    tgt, non = rng.normal(1, 1, 50), rng.normal(-1, 1, 80)
    start = _objective(Calibration(0.0, 0.0), tgt, non)  # where Newton starts: every llr 0
    best = train_calibration(tgt, non)
    assert _objective(best, tgt, non) < start - 0.3
    # a search direction along which every step size is worse (here: uphill, as a badly
    # conditioned Hessian can give): the search must keep the point it has, not take the last try
    solve = np.linalg.solve
    monkeypatch.setattr(np.linalg, "solve", lambda a, b: -solve(a, b))
    stuck = train_calibration(tgt, non)
    assert _objective(stuck, tgt, non) <= start
    assert (stuck.scale, stuck.offset) == (0.0, 0.0)


def test_calibration_json_round_trip_and_errors(tmp_path):
    cal = Calibration(scale=1.5, offset=-0.25, p_target=0.5, num_target=3, num_nontarget=4, trials="t")
    cal.save(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["type"] == "linear" and data["formula"] == "llr = scale * score + offset"
    assert Calibration.load(tmp_path / "c.json") == cal
    np.testing.assert_allclose(cal.apply([0.0, 2.0]), [-0.25, 2.75])
    (tmp_path / "bad.json").write_text('{"scale": 1}\n')
    with pytest.raises(DataError, match="not a linear calibration"):
        Calibration.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="needs target and non-target"):
        train_calibration([], [1.0])


# --- Cllr, min Cllr, actual DCF --------------------------------------------------------------------

def test_cllr_values():
    assert cllr([0.0], [0.0]) == pytest.approx(1.0)  # a system that always says "no idea"
    assert cllr([50.0], [-50.0]) == pytest.approx(0.0, abs=1e-20)
    tgt, non = [2.0, 0.5], [-1.0, 1.0]
    expected = (np.mean(np.log2(1 + np.exp(-np.array(tgt)))) + np.mean(np.log2(1 + np.exp(non)))) / 2
    assert cllr(tgt, non) == pytest.approx(expected)


def _pav_reference(scores, labels):
    """Pool-adjacent-violators by hand: ties pooled first, then merge decreasing neighbours."""
    order = sorted(set(scores))
    blocks = [[sum(l for s, l in zip(scores, labels) if s == v), sum(1 for s in scores if s == v)] for v in order]
    merged = []
    for b in blocks:
        merged.append([b[0], b[1], 1])
        while len(merged) > 1 and merged[-2][0] / merged[-2][1] >= merged[-1][0] / merged[-1][1]:
            t, n, k = merged.pop()
            merged[-1] = [merged[-1][0] + t, merged[-1][1] + n, merged[-1][2] + k]
    posterior = [b[0] / b[1] for b in merged for _ in range(b[2])]
    return dict(zip(order, posterior))


def test_min_cllr_matches_hand_pav():
    rng = np.random.default_rng(3)
    tgt = np.round(rng.normal(1, 1, 60), 1)
    non = np.round(rng.normal(0, 1, 90), 1)
    post = _pav_reference(np.concatenate([tgt, non]).tolist(), [1] * 60 + [0] * 90)
    prior = math.log(60 / 90)
    cost_t = [math.log2(1 + (1 - post[s]) / post[s] * math.exp(prior)) for s in tgt]
    cost_n = [math.log2(1 + post[s] / (1 - post[s]) * math.exp(-prior)) if post[s] < 1 else math.inf for s in non]
    assert min_cllr(tgt, non) == pytest.approx((np.mean(cost_t) + np.mean(cost_n)) / 2, rel=1e-10)
    assert min_cllr([0.9, 0.8, 0.7], [0.3, 0.2]) == pytest.approx(0.0, abs=1e-12)  # separable
    assert min_cllr([0.5, 0.5], [0.5, 0.5, 0.5]) == pytest.approx(1.0)  # useless
    # invariant under any increasing map
    assert min_cllr(np.exp(tgt), np.exp(non)) == pytest.approx(min_cllr(tgt, non))


@pytest.mark.parametrize("p,c_miss,c_fa", [(0.01, 1, 1), (0.5, 1, 1), (0.05, 10, 1)])
def test_act_dcf_counts_bayes_decisions(p, c_miss, c_fa):
    rng = np.random.default_rng(4)
    tgt, non = rng.normal(3, 2, 500), rng.normal(-3, 2, 2000)
    thr = math.log(c_fa * (1 - p) / (c_miss * p))
    assert bayes_threshold(p, c_miss, c_fa) == pytest.approx(thr)
    value, got_thr = act_dcf(tgt, non, p, c_miss, c_fa)
    expected = (c_miss * p * np.mean(tgt < thr) + c_fa * (1 - p) * np.mean(non >= thr)) / min(c_miss * p,
                                                                                             c_fa * (1 - p))
    assert value == pytest.approx(expected) and got_thr == pytest.approx(thr)


# --- commands ------------------------------------------------------------------------------------

def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyspeaker", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_calibrate_commands_and_calibrated_metrics(tmp_path):
    tgt, non, a_true, b_true = _gaussian_scores(3000, 6000, seed=5)
    lines, trials = [], []
    for k, s in enumerate(np.concatenate([tgt, non])):
        e, t = f"e{k % 97}", f"t{k}"
        lines.append(f"{e} {t} {s:.6f}")
        trials.append(f"{e} {t} {'target' if k < 3000 else 'nontarget'}")
    (tmp_path / "trials").write_text("\n".join(trials) + "\n")
    (tmp_path / "scores.txt").write_text("\n".join(lines) + "\n")
    r = _cli("calibrate", "train", "--scores", tmp_path / "scores.txt", "--trials", tmp_path / "trials",
             "--out", tmp_path / "cal" / "calibration.json")
    assert r.returncode == 0, r.stderr
    assert "every target score is above every non-target score" not in r.stderr   # overlapping classes
    cal = Calibration.load(tmp_path / "cal" / "calibration.json")
    assert cal.scale == pytest.approx(a_true, rel=0.1) and cal.offset == pytest.approx(b_true, abs=0.1)
    assert cal.trials == str(tmp_path / "trials") and (cal.num_target, cal.num_nontarget) == (3000, 6000)
    assert f"scale: {cal.scale:.6g}" in r.stdout

    out = tmp_path / "calibrated" / "scores.txt"
    r = _cli("calibrate", "apply", "--scores", tmp_path / "scores.txt", "--calibration",
             tmp_path / "cal" / "calibration.json", "--out", out)
    assert r.returncode == 0, r.stderr
    got = out.read_text().splitlines()
    assert len(got) == 9000 and got[5].split()[:2] == lines[5].split()[:2]
    assert float(got[5].split()[2]) == pytest.approx(cal.scale * float(lines[5].split()[2]) + cal.offset, abs=1e-6)
    side = json.loads((tmp_path / "calibrated" / "scores.json").read_text())
    assert side["calibrated"] is True and side["num_trials"] == 9000

    # the sidecar marks the scores as calibrated: actual DCF and Cllr are reported
    r = _cli("compute-metrics", "--scores", out, "--trials", tmp_path / "trials", "--out", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    llr = np.array([float(x.split()[2]) for x in got])
    assert m["calibrated"] is True
    assert m["cllr"] == pytest.approx(cllr(llr[:3000], llr[3000:]), rel=1e-9)
    assert m["min_cllr"] == pytest.approx(min_cllr(llr[:3000], llr[3000:]), rel=1e-9)
    assert m["act_dcf"]["0.01"] == pytest.approx(act_dcf(llr[:3000], llr[3000:], 0.01)[0])
    assert m["min_dcf"]["0.01"] <= m["act_dcf"]["0.01"] + 1e-12
    assert f"Cllr: {m['cllr']:.4f} bits" in r.stdout and "actDCF(p_target=0.01): " in r.stdout
    # separable calibration trials: a warning that the calibration will be over-confident
    sep = tmp_path / "separable.txt"
    sep.write_text("".join(f"{line.rsplit(' ', 1)[0]} {(1.0 if k < 3000 else -1.0) + 0.001 * (k % 7)}\n"
                           for k, line in enumerate(lines)))
    r = _cli("calibrate", "train", "--scores", sep, "--trials", tmp_path / "trials", "--out", tmp_path / "sep.json")
    assert r.returncode == 0 and (f"{sep}: every target score is above every non-target score on these 9000 "
                                  f"trials") in r.stderr, r.stderr
    # uncalibrated raw scores: no actual DCF unless asked for
    r = _cli("compute-metrics", "--scores", tmp_path / "scores.txt", "--trials", tmp_path / "trials")
    assert r.returncode == 0 and "Cllr" not in r.stdout
    r = _cli("compute-metrics", "--scores", tmp_path / "scores.txt", "--trials", tmp_path / "trials", "--calibrated")
    assert r.returncode == 0 and "min Cllr: " in r.stdout


def test_score_command_applies_calibration(tmp_path):
    import h5py

    rng = np.random.default_rng(6)
    ids = [f"u{i}" for i in range(10)]
    with h5py.File(tmp_path / "xvector.h5", "w") as f:
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("embeddings", data=rng.normal(size=(10, 5)).astype(np.float32))
    (tmp_path / "trials").write_text("".join(f"u{i} u{9 - i}\n" for i in range(10)))
    Calibration(scale=4.0, offset=-1.5).save(tmp_path / "calibration.json")
    raw, cal = tmp_path / "raw.txt", tmp_path / "llr.txt"
    assert _cli("score", "--embeddings", tmp_path / "xvector.h5", "--trials", tmp_path / "trials",
                "--out", raw).returncode == 0
    r = _cli("score", "--embeddings", tmp_path / "xvector.h5", "--trials", tmp_path / "trials", "--out", cal,
             "--calibration", tmp_path / "calibration.json")
    assert r.returncode == 0, r.stderr
    a = np.array([float(x.split()[2]) for x in raw.read_text().splitlines()])
    b = np.array([float(x.split()[2]) for x in cal.read_text().splitlines()])
    np.testing.assert_allclose(b, 4.0 * a - 1.5, atol=1e-5)
    side = json.loads((tmp_path / "llr.json").read_text())
    assert side["calibrated"] is True and side["calibration"] == str(tmp_path / "calibration.json")
    # scores named so that their sidecar would replace the calibration file: refused, nothing written
    r = _cli("score", "--embeddings", tmp_path / "xvector.h5", "--trials", tmp_path / "trials", "--out",
             tmp_path / "calibration.txt", "--calibration", tmp_path / "calibration.json")
    assert r.returncode == 1 and "is the input --calibration" in r.stderr
    assert not (tmp_path / "calibration.txt").exists()
    assert Calibration.load(tmp_path / "calibration.json").scale == 4.0
