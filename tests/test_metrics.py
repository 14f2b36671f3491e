"""EER / minDCF / Kaldi compute-eer reference values, plots, and ``pyspeaker compute-metrics`` end to end."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyspeaker.errors import DataError
from pyspeaker.metrics import compute_eer, compute_min_dcf, error_rates, kaldi_eer

A = ([.92, .81, .74, .58, .33], [.77, .62, .49, .41, .28, .19, .11, .05])
B = ([.9, .8, .7], [.3, .2, .1, .0])
C = ([.9, .6, .6, .4], [.6, .6, .5, .2, .1])


def _set_d():
    rng = np.random.default_rng(0)
    tgt = rng.normal(2, 1, 1000)  # targets are drawn first
    non = rng.normal(0, 1, 10000)
    return tgt, non


def _kaldi_loop(tgt, non):
    """Literal transcription of Kaldi's ComputeEer loop (compute-eer.cc), as the reference."""
    tgt = sorted(np.float32(x) for x in tgt)
    non = sorted(np.float32(x) for x in non)
    p = 0
    while p + 1 < len(tgt):
        n = int(len(non) * p * 1.0 / len(tgt))
        pos = max(len(non) - 1 - n, 0)
        if non[pos] < tgt[p]:
            break
        p += 1
    return p / len(tgt), float(tgt[p])


def _naive_rates(tgt, non):
    """Error rates at every distinct score (accept >= t) by direct counting."""
    out = []
    for t in sorted(set(tgt) | set(non)):
        out.append((t, sum(x < t for x in tgt) / len(tgt), sum(x >= t for x in non) / len(non)))
    return out


# --- reference values ------------------------------------------------------------------------

def test_reference_a():
    eer, thr = compute_eer(*A)
    assert f"{100 * eer:.2f}" == "25.00"
    assert eer == pytest.approx(0.25)
    assert thr == pytest.approx(0.59)  # interpolated between the .58 and .62 operating points
    dcf, dcf_thr = compute_min_dcf(*A, 0.01)
    assert f"{dcf:.4f}" == "0.6000"
    assert dcf_thr == pytest.approx(0.81)
    assert f"{100 * kaldi_eer(*A)[0]:.2f}" == "40.00"
    assert kaldi_eer(*A)[1] == pytest.approx(0.74)


def test_reference_b_perfect_separation():
    eer, thr = compute_eer(*B)
    assert eer == 0.0
    assert 0.3 < thr <= 0.7  # any threshold between the classes separates them
    for p in (0.01, 0.05):
        assert compute_min_dcf(*B, p)[0] == 0.0
    assert kaldi_eer(*B)[0] == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_reference_c_ties_order_invariant(seed):
    rng = np.random.default_rng(seed)
    tgt, non = np.array(C[0]), np.array(C[1])
    if seed:
        tgt, non = rng.permutation(tgt), rng.permutation(non)
    eer, _ = compute_eer(tgt, non)
    assert f"{100 * eer:.2f}" == "33.33"
    assert eer == pytest.approx(1 / 3)
    assert f"{compute_min_dcf(tgt, non, 0.01)[0]:.4f}" == "0.7500"
    assert f"{100 * kaldi_eer(tgt, non)[0]:.2f}" == "50.00"


def test_ties_all_permutations_identical_results():
    results = set()
    for tgt in itertools.permutations(C[0]):
        for non in itertools.islice(itertools.permutations(C[1]), 0, 120, 7):
            th, pm, pf = error_rates(tgt, non)
            results.add((compute_eer(tgt, non), compute_min_dcf(tgt, non, 0.05), th.tobytes(), pm.tobytes(),
                         pf.tobytes()))
    assert len(results) == 1


def test_reference_d_gaussian():
    tgt, non = _set_d()
    eer, _ = compute_eer(tgt, non)
    assert f"{100 * eer:.2f}" == "16.30"
    assert kaldi_eer(tgt, non)[0] == pytest.approx(eer, abs=1 / 1000)


# --- operating points --------------------------------------------------------------------------

def test_error_rates_points():
    th, pm, pf = error_rates(*C)
    assert th.tolist() == [.1, .2, .4, .5, .6, .9, np.inf]
    assert pm.tolist() == pytest.approx([0, 0, 0, .25, .25, .75, 1])
    assert pf.tolist() == pytest.approx([1, .8, .6, .6, .4, 0, 0])


def test_error_rates_match_naive_counting():
    rng = np.random.default_rng(3)
    tgt = np.round(rng.normal(1, 1, 40), 1)  # rounding creates many ties, also across classes
    non = np.round(rng.normal(0, 1, 60), 1)
    th, pm, pf = error_rates(tgt, non)
    naive = _naive_rates(tgt.tolist(), non.tolist())
    assert len(th) == len(naive) + 1
    assert np.allclose(th[:-1], [t for t, _, _ in naive])
    assert np.allclose(pm[:-1], [m for _, m, _ in naive])
    assert np.allclose(pf[:-1], [f for _, _, f in naive])
    assert (pm[0], pf[0], pm[-1], pf[-1]) == (0.0, 1.0, 1.0, 0.0)
    assert np.all(np.diff(pm) >= 0) and np.all(np.diff(pf) <= 0)


def test_eer_lies_between_bracketing_points():
    rng = np.random.default_rng(5)
    tgt, non = rng.normal(1.5, 1, 300), rng.normal(0, 1, 700)
    th, pm, pf = error_rates(tgt, non)
    eer, thr = compute_eer(tgt, non)
    i1 = int(np.argmax(pm - pf >= 0))
    assert min(pm[i1 - 1], pf[i1]) <= eer <= max(pm[i1], pf[i1 - 1])
    assert th[i1 - 1] < thr <= th[i1]
    # accepting score >= threshold reproduces the point just past the crossing
    assert np.mean(tgt < thr) == pytest.approx(pm[i1])


def test_invalid_inputs():
    with pytest.raises(ValueError, match="no target"):
        compute_eer([], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        compute_eer([0.1, np.nan], [0.0])
    with pytest.raises(ValueError, match="p_target"):
        compute_min_dcf(*A, 1.5)


# --- kaldi compatibility -------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_kaldi_eer_matches_literal_loop(seed):
    rng = np.random.default_rng(seed)
    n_tgt, n_non = rng.integers(1, 60), rng.integers(1, 300)
    tgt = np.round(rng.normal(1, 1, n_tgt), 1)
    non = np.round(rng.normal(0, 1, n_non), 1)
    assert kaldi_eer(tgt, non) == _kaldi_loop(tgt, non)


def test_kaldi_eer_single_target():
    assert kaldi_eer([0.5], [0.1, 0.9]) == (0.0, 0.5)


# --- minDCF normalisation ------------------------------------------------------------------------

@pytest.mark.parametrize("p,c_miss,c_fa", [(0.01, 1, 1), (0.05, 1, 1), (0.5, 1, 1), (0.01, 10, 1), (0.9, 1, 3)])
def test_min_dcf_normalisation(p, c_miss, c_fa):
    rng = np.random.default_rng(1)
    tgt, non = rng.normal(1, 1, 200), rng.normal(0, 1, 800)
    best = min(c_miss * p * m + c_fa * (1 - p) * f for _, m, f in _naive_rates(tgt.tolist(), non.tolist())
               + [(np.inf, 1.0, 0.0)])
    value, thr = compute_min_dcf(tgt, non, p, c_miss, c_fa)
    assert value == pytest.approx(best / min(c_miss * p, c_fa * (1 - p)))
    assert value <= 1.0 + 1e-12  # never worse than the best trivial system (accept or reject all)
    dcf_at_thr = c_miss * p * np.mean(tgt < thr) + c_fa * (1 - p) * np.mean(non >= thr)
    assert dcf_at_thr == pytest.approx(best)


def test_min_dcf_useless_system_is_one():
    # identical distributions: the best is a trivial system, normalised cost 1
    assert compute_min_dcf([0.5, 0.5], [0.5, 0.5, 0.5], 0.01) == (1.0, np.inf)


def test_speed_one_million_scores():
    import time

    rng = np.random.default_rng(0)
    tgt, non = rng.normal(2, 1, 100_000), rng.normal(0, 1, 900_000)
    start = time.perf_counter()
    compute_eer(tgt, non)
    compute_min_dcf(tgt, non, 0.01)
    assert time.perf_counter() - start < 10  # sort-based; a per-trial loop would take far longer


# --- plots ---------------------------------------------------------------------------------------

def test_plots_write_png(tmp_path):
    from pyspeaker.plots import plot_det, plot_score_histogram

    tgt, non = _set_d()
    plot_det({"gauss": (tgt, non), "A": A}, tmp_path / "det.png", p_targets=(0.01, 0.05))
    eer_thr = compute_eer(tgt, non)[1]
    plot_score_histogram(tgt, non, tmp_path / "hist.png", thresholds={"EER": eer_thr, "reject all": np.inf})
    for name in ("det.png", "hist.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.png", "hist.png"]  # no temp files left


def test_plot_det_perfect_system(tmp_path):
    from pyspeaker.plots import plot_det

    plot_det({"perfect": B}, tmp_path / "det.png")
    assert (tmp_path / "det.png").stat().st_size > 5_000


# --- compute-metrics end to end --------------------------------------------------------------------

def _write_case_a(tmp_path: Path, fmt: str = "kaldi") -> tuple[Path, Path]:
    tgt, non = A
    trials, scores = [], []
    for i, s in enumerate(tgt):
        trials.append(f"spk{i} utt_t{i} target" if fmt == "kaldi" else f"1 spk{i} utt_t{i}")
        scores.append(f"spk{i} utt_t{i} {s:.6f}")
    for i, s in enumerate(non):
        trials.append(f"spk{i % 3} utt_n{i} nontarget" if fmt == "kaldi" else f"0 spk{i % 3} utt_n{i}")
        scores.append(f"spk{i % 3} utt_n{i} {s:.6f}")
    t, s = tmp_path / "trials", tmp_path / "scores.txt"
    t.write_text("\n".join(trials) + "\n")
    s.write_text("\n".join(scores) + "\n")
    return t, s


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyspeaker", "compute-metrics", *args],
                          capture_output=True, text=True, timeout=120)


def test_compute_metrics_end_to_end(tmp_path):
    trials, scores = _write_case_a(tmp_path)
    out = tmp_path / "res" / "metrics.json"
    r = _run("--scores", str(scores), "--trials", str(trials), "--out", str(out),
             "--det", str(tmp_path / "res" / "det.png"), "--hist", str(tmp_path / "res" / "hist.png"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "EER: 25.00 %" in lines
    assert "minDCF(p_target=0.01): 0.6000" in lines
    assert "minDCF(p_target=0.05): 0.6000" in lines
    assert "EER (Kaldi compute-eer): 40.00 %" in lines
    assert f"trials: {trials} (13 lines): 5 target, 8 nontarget" in lines
    result = json.loads(out.read_text())
    assert result["eer"] == pytest.approx(25.0)
    assert result["eer_threshold"] == pytest.approx(0.59)
    assert result["min_dcf"] == {"0.01": pytest.approx(0.6), "0.05": pytest.approx(0.6)}
    assert (result["num_target"], result["num_nontarget"]) == (5, 8)
    assert result["trials"] == str(trials)
    assert result["min_dcf_threshold"]["0.01"] == pytest.approx(0.81)
    assert result["eer_kaldi"] == pytest.approx(40.0)
    assert result["trials_lines"] == 13
    for name in ("det.png", "hist.png"):
        assert (tmp_path / "res" / name).read_bytes()[:4] == b"\x89PNG"


def test_compute_metrics_voxceleb_trials_shuffled_scores_and_options(tmp_path):
    trials, scores = _write_case_a(tmp_path, fmt="voxceleb")
    lines = scores.read_text().splitlines()
    # VoxCeleb trials are '<label> <enroll> <test>': scores are keyed by (enroll, test) pairs;
    # shuffled order forces matching by key instead of by position
    np.random.default_rng(0).shuffle(lines)
    scores.write_text("\n".join(lines) + "\n")
    out = tmp_path / "m.json"
    r = _run("--scores", str(scores), "--trials", str(trials), "--out", str(out), "--p-target", "0.01",
             "--p-target", "0.5", "--c-miss", "10")
    assert r.returncode == 0, r.stderr
    assert "EER: 25.00 %" in r.stdout
    result = json.loads(out.read_text())
    assert set(result["min_dcf"]) == {"0.01", "0.5"}
    assert result["min_dcf"]["0.01"] == pytest.approx(compute_min_dcf(*A, 0.01, c_miss=10)[0])
    assert result["c_miss"] == 10 and result["p_target"] == [0.01, 0.5]
    assert "minDCF(p_target=0.5, c_miss=10, c_fa=1):" in r.stdout


def test_compute_metrics_trial_without_score(tmp_path):
    trials, scores = _write_case_a(tmp_path)
    lines = scores.read_text().splitlines()
    del lines[6]  # the score of trial line 7: spk1 utt_n1
    scores.write_text("\n".join(lines) + "\n")
    out = tmp_path / "metrics.json"
    r = _run("--scores", str(scores), "--trials", str(trials), "--out", str(out))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == f"error: {trials}:7: no score for trial 'spk1 utt_n1' in {scores}"
    assert not out.exists()


def test_compute_metrics_score_without_trial(tmp_path):
    trials, scores = _write_case_a(tmp_path)
    scores.write_text(scores.read_text() + "spk9 utt_x 0.5\n")
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert r.returncode == 1
    assert f"error: {scores}:14: score for 'spk9 utt_x' has no trial in {trials}" in r.stderr


def test_compute_metrics_bad_score_line(tmp_path):
    trials, scores = _write_case_a(tmp_path)
    lines = scores.read_text().splitlines()
    lines[2] = "spk2 utt_t2 abc"
    scores.write_text("\n".join(lines) + "\n")
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert r.returncode == 1
    assert f"error: {scores}:3: score 'abc' is not a number" in r.stderr
    lines[2] = "spk2 utt_t2"
    scores.write_text("\n".join(lines) + "\n")
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert r.returncode == 1
    assert f"error: {scores}:3: expected 3 fields '<enroll> <test> <score>', got 2" in r.stderr


def test_compute_metrics_unlabelled_trials(tmp_path):
    trials, scores = _write_case_a(tmp_path)
    trials.write_text("".join(" ".join(line.split()[:2]) + "\n" for line in trials.read_text().splitlines()))
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert r.returncode == 1
    assert "no target/nontarget labels" in r.stderr


def test_match_scores_by_key_with_repeated_pairs(tmp_path):
    from pyspeaker.commands.compute_metrics import match_scores, read_scores
    from pyspeaker.data.trials import read_trials

    trials_path = tmp_path / "trials"
    trials_path.write_text("a x target\nb y nontarget\na x target\nb x nontarget\n")
    scores_path = tmp_path / "scores.txt"
    scores_path.write_text("b x 0.3\n\na x 0.9\nb y 0.1\na x 0.9\n")  # blank line 2 keeps line numbers
    trials = read_trials(trials_path)
    assert match_scores(trials, scores_path, *read_scores(scores_path)).tolist() == [0.9, 0.1, 0.9, 0.3]

    scores_path.write_text("b x 0.3\n\na x 0.9\nb y 0.1\na x 0.8\n")
    with pytest.raises(DataError) as err:
        match_scores(trials, scores_path, *read_scores(scores_path))
    assert str(err.value) == f"{scores_path}:5: second, different score for trial 'a x' (first on line 3)"

    scores_path.write_text("b x 0.3\na x 0.9\nb y 0.1\na y 0.5\n")  # known ids, but not a trial pair
    with pytest.raises(DataError) as err:
        match_scores(trials, scores_path, *read_scores(scores_path))
    assert str(err.value) == f"{scores_path}:4: score for 'a y' has no trial in {trials_path}"


def test_compute_metrics_empty_scores(tmp_path):
    trials, scores = _write_case_a(tmp_path)
    scores.write_text("\n")
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert r.returncode == 1
    assert f"error: {scores}: scores file is empty" in r.stderr
