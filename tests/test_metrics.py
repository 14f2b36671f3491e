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


def test_eer_of_a_million_gaussian_scores_is_the_analytic_one():
    from math import erf, sqrt

    rng = np.random.default_rng(0)
    tgt, non = rng.normal(2, 1, 100_000), rng.normal(0, 1, 900_000)
    eer, threshold = compute_eer(tgt, non)
    # two unit-variance Gaussians 2 apart cross at 1: EER = Phi(-1)
    assert abs(eer - 0.5 * (1 + erf(-1 / sqrt(2)))) < 0.003 and abs(threshold - 1.0) < 0.02
    from pyspeaker.metrics import kaldi_min_dcf

    scores, labels = np.concatenate([tgt, non]), np.r_[np.ones(tgt.size, bool), np.zeros(non.size, bool)]
    assert abs(compute_min_dcf(tgt, non, 0.01)[0] - kaldi_min_dcf(scores, labels, 0.01)[0]) < 1e-3


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
    from pyspeaker.commands.compute_metrics import load_matched

    trials_path = tmp_path / "trials"
    trials_path.write_text("a x target\nb y nontarget\na x target\nb x nontarget\n")
    scores_path = tmp_path / "scores.txt"
    scores_path.write_text("b x 0.3\n\na x 0.9\nb y 0.1\na x 0.9\n")  # blank line 2 keeps line numbers
    assert load_matched(scores_path, trials_path)[0].tolist() == [0.9, 0.1, 0.9, 0.3]

    scores_path.write_text("b x 0.3\n\na x 0.9\nb y 0.1\na x 0.8\n")
    with pytest.raises(DataError) as err:
        load_matched(scores_path, trials_path)
    assert str(err.value).startswith(f"{scores_path}:5: second, different score for trial 'a x'")

    scores_path.write_text("b x 0.3\na x 0.9\nb y 0.1\na y 0.5\n")  # known ids, but not a trial pair
    with pytest.raises(DataError) as err:
        load_matched(scores_path, trials_path)
    assert str(err.value) == f"{scores_path}:4: score for 'a y' has no trial in {trials_path}"


def test_compute_metrics_empty_scores(tmp_path):
    trials, scores = _write_case_a(tmp_path)
    scores.write_text("\n")
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert r.returncode == 1
    assert f"error: {scores}: scores file is empty" in r.stderr


# --- Kaldi's compute_min_dcf.py, --compat kaldi ------------------------------------------------------

def _kaldi_min_dcf_loop(scores, labels, p, c_miss=1.0, c_fa=1.0):
    """Literal transcription of Kaldi's sid/compute_min_dcf.py (ComputeErrorRates + ComputeMinDcf)."""
    from operator import itemgetter

    sorted_indexes, thresholds = zip(*sorted([(i, s) for i, s in enumerate(scores)], key=itemgetter(1)))
    labels = [labels[i] for i in sorted_indexes]
    fnrs, fprs = [], []
    for i in range(len(labels)):
        if i == 0:
            fnrs.append(labels[i])
            fprs.append(1 - labels[i])
        else:
            fnrs.append(fnrs[i - 1] + labels[i])
            fprs.append(fprs[i - 1] + 1 - labels[i])
    fnrs_norm = sum(labels)
    fprs_norm = len(labels) - fnrs_norm
    fnrs = [x / float(fnrs_norm) for x in fnrs]
    fprs = [1 - x / float(fprs_norm) for x in fprs]
    min_c_det, min_c_det_threshold = float("inf"), thresholds[0]
    for i in range(len(fnrs)):
        c_det = c_miss * fnrs[i] * p + c_fa * fprs[i] * (1 - p)
        if c_det < min_c_det:
            min_c_det, min_c_det_threshold = c_det, thresholds[i]
    return min_c_det / min(c_miss * p, c_fa * (1 - p)), min_c_det_threshold


@pytest.mark.parametrize("seed", range(5))
def test_kaldi_min_dcf_matches_literal_script(seed):
    from pyspeaker.metrics import kaldi_min_dcf

    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(0, 1, 300), 1)  # many ties: the trial order matters for Kaldi
    labels = (rng.random(300) < 0.3).astype(int)
    scores[labels == 1] += 1.0
    for p, c_miss in ((0.01, 1.0), (0.05, 1.0), (0.3, 10.0)):
        got = kaldi_min_dcf(scores, labels, p, c_miss)
        ref = _kaldi_min_dcf_loop(scores.tolist(), labels.tolist(), p, c_miss)
        assert got[0] == pytest.approx(ref[0], rel=1e-12) and got[1] == ref[1]


def _write_case(tmp_path: Path, tgt, non, *, wespeaker: bool = False) -> tuple[Path, Path]:
    trials, scores = [], []
    for i, s in enumerate(list(tgt) + list(non)):
        label = "target" if i < len(tgt) else "nontarget"
        trials.append(f"spk{i % 3} utt{i} {label}")
        scores.append(f"spk{i % 3} utt{i} {s:.6f}" + (f" {label}" if wespeaker else ""))
    t, s = tmp_path / "trials", tmp_path / "scores.txt"
    t.write_text("\n".join(trials) + "\n")
    s.write_text("\n".join(scores) + "\n")
    return t, s


@pytest.mark.parametrize("case,eer,kaldi,dcf", [(A, "25.00", "40.00", "0.6000"), (C, "33.33", "50.00", "0.7500")])
def test_compute_metrics_compat_kaldi(tmp_path, case, eer, kaldi, dcf):
    trials, scores = _write_case(tmp_path, *case)
    r = _run("--scores", str(scores), "--trials", str(trials), "--compat", "kaldi", "--out", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    assert f"EER: {kaldi} %" in r.stdout and f"EER (tie-aware, interpolated): {eer} %" in r.stdout
    m = json.loads((tmp_path / "m.json").read_text())
    assert f"{m['eer']:.2f}" == kaldi and f"{m['eer_tie_aware']:.2f}" == eer and m["compat"] == "kaldi"
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert f"EER: {eer} %" in r.stdout and f"minDCF(p_target=0.01): {dcf}" in r.stdout
    assert f"EER (Kaldi compute-eer): {kaldi} %" in r.stdout


def test_compute_metrics_reads_wespeaker_scores(tmp_path):
    trials, scores = _write_case(tmp_path, *A, wespeaker=True)
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert r.returncode == 0, r.stderr
    assert "EER: 25.00 %" in r.stdout
    # WeSpeaker's score_norm output: 8 fields, label 4th
    lines = [line + " 1.0 2.0 0.1 0.2" for line in scores.read_text().splitlines()]
    scores.write_text("\n".join(lines) + "\n")
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert r.returncode == 0, r.stderr
    assert "EER: 25.00 %" in r.stdout
    # labels that contradict the trials are an error naming the line
    lines[4] = lines[4].replace(" target ", " nontarget ")
    scores.write_text("\n".join(lines) + "\n")
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert r.returncode == 1
    assert f"error: {scores}:5: label 'nontarget' disagrees with {trials} line 5 ('target')" in r.stderr
    # unlabelled trials take the scores' labels
    trials.write_text("".join(" ".join(t.split()[:2]) + "\n" for t in trials.read_text().splitlines()))
    scores.write_text("\n".join(lines[:4] + [lines[4].replace(" nontarget ", " target ")] + lines[5:]) + "\n")
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert r.returncode == 0, r.stderr
    assert "EER: 25.00 %" in r.stdout


def test_compute_metrics_kaldi_scores_blank_lines_and_labels_in_results(tmp_path):
    trials, scores = _write_case(tmp_path, *A)
    lines = scores.read_text().splitlines()
    scores.write_text("\n".join(lines[:3] + ["", ""] + lines[3:]) + "\n")  # Kaldi-style 'utt1 utt2 score'
    out = tmp_path / "m.json"
    r = _run("--scores", str(scores), "--trials", str(trials), "--out", str(out), "--backend", "lda200+plda",
             "--score-norm", "asnorm(top_n=300)")
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    assert (m["backend"], m["score_norm"], m["trials_lines"], m["p_target"]) == (
        "lda200+plda", "asnorm(top_n=300)", 13, [0.01, 0.05])
    assert "back-end: lda200+plda, score normalisation: asnorm(top_n=300)" in r.stdout
    scores.write_text(scores.read_text() + "spk0 nobody 0.3\n")
    r = _run("--scores", str(scores), "--trials", str(trials))
    assert r.returncode == 1
    assert f"error: {scores}:16: score for 'spk0 nobody' has no trial in {trials}" in r.stderr


def test_streaming_readers_with_tiny_blocks(tmp_path):
    from pyspeaker.data.trials import read_trials
    from pyspeaker.scoring.lists import match, read_scores

    rng = np.random.default_rng(0)
    ids = [f"id{i:03d}/u{i}.wav" for i in range(40)]
    rows = [(int(rng.integers(2)), ids[i % 40], ids[(i // 40 + 3 * (i % 40)) % 40]) for i in range(500)]  # unique pairs
    path = tmp_path / "veri.txt"
    path.write_text("".join(f"{y} {e} {t}\n" for y, e, t in rows)[:-1])  # VoxCeleb list, no final newline
    for block in (7, 64, 1 << 20):
        trials = read_trials(path, block_bytes=block)
        assert trials.enroll == [e for _, e, _ in rows] and trials.test == [t for _, _, t in rows]
        assert trials.labels.tolist() == [y == 1 for y, _, _ in rows]
        assert trials.num_lines == 500 and trials.format == "voxceleb"
    # one code per distinct id
    assert sorted(trials.vocab.ids()) == sorted({x for _, e, t in rows for x in (e, t)})
    scores = tmp_path / "s.txt"
    order = rng.permutation(500)
    scores.write_text("".join(f"{rows[k][1]}  {rows[k][2]}\t{k / 1000:.3f}\n\n" for k in order))
    for block in (11, 1 << 20):
        s = read_scores(scores, trials.vocab, block_bytes=block)
        assert s.line(0) == 1 and s.line(1) == 3 and s.line(499) == 999 and len(s) == 500
        index = match(trials, s)
        np.testing.assert_allclose(s.scores[index], np.arange(500) / 1000)
    scores.write_text("".join(f"{rows[k][1]} {rows[k][2]} {k / 1000:.3f}\n" for k in range(500)))
    s = read_scores(scores, trials.vocab, block_bytes=64)
    assert s.numbers is None and match(trials, s) is None  # by position, no line numbers kept


@pytest.mark.parametrize("text,line,message", [
    ("a b target\nc d maybe\n", 2, "unknown label 'maybe' (expected target or nontarget): 'c d maybe'"),
    ("a b target\nc d\n", 2, "expected 3 fields like line 1 (kaldi trials), got 2: 'c d'"),
    ("a b target\n\nc d target\n", 2, "empty line"),
    ("a b target\nc d target \n\n", 3, "empty line"),
    ("a b\nc \n", 2, "expected 2 fields like line 1 (unlabeled trials), got 1: 'c'"),
    ("a b c d\n", 1, "unknown trials format 'a b c d': expected"),
])
def test_streaming_trials_errors_whatever_the_blocks(tmp_path, text, line, message):
    from pyspeaker.data.trials import read_trials

    path = tmp_path / "trials"
    path.write_text(text)
    for block in (5, 1 << 20):
        with pytest.raises(DataError) as err:
            read_trials(path, block_bytes=block)
        assert err.value.line == line and err.value.message.startswith(message), err.value


def test_streaming_scores_errors(tmp_path):
    from pyspeaker.data.columns import Vocabulary
    from pyspeaker.scoring.lists import read_scores

    path = tmp_path / "s.txt"
    for text, line, message in [("a b 0.5\n\na b 0.1 x\n", 3, "expected 3 fields '<enroll> <test> <score>', got 4"),
                                ("a b nan\n", 1, "score 'nan' is not finite"),
                                ("a b 0.5\nc d -Inf\n", 2, "score '-Inf' is not finite"),
                                ("a b 0.5\nc d 1e999\n", 2, "score '1e999' is not finite"),
                                ("a b 0.5\nc d 0.25\ne f 1..5\n", 3, "score '1..5' is not a number"),
                                ("a b 0.5 target\na b 0.5 maybe\n", 2, "unknown label 'maybe' in field 4"),
                                ("a b 0.5 maybe\n", 1, "expected 3 fields"),
                                ("\n\na b\n", 3, "expected 3 fields '<enroll> <test> <score>' (or WeSpeaker's"),
                                ("a b 0.5 target\nc d 0.1\n", 2, "expected 4 fields like the first line "
                                                                   "('<enroll> <test> <score> <label> ...'), got 3"),
                                ("a b 0.5\na\u00a0b c 0.1\n", 2, "expected 3 fields '<enroll> <test> <score>', got 4 "
                                                                  "(non-ASCII whitespace?)"),
                                (b"a b 0.5\n\xff b 1\n", 2, "not UTF-8 text (byte 8)"),
                                (b"\xff b 1\n", 1, "not UTF-8 text (byte 0)")]:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        for block in (4, 1 << 20):
            with pytest.raises(DataError) as err:
                read_scores(path, Vocabulary(), grow=True, block_bytes=block)
            assert err.value.line == line and err.value.message.startswith(message), (block, err.value)
    path.write_text("\n \n")
    with pytest.raises(DataError, match="scores file is empty"):
        read_scores(path, Vocabulary())


# --- report and plot-det ------------------------------------------------------------------------------

def test_report_and_plot_det(tmp_path):
    trials, scores = _write_case(tmp_path, *A)
    tgt, non = _set_d()
    other = tmp_path / "other.txt"
    other.write_text("".join(f"spk{i % 3} utt{i} {s:.4f}\n" for i, s in enumerate(list(A[0]) + list(A[1])[::-1])))
    results = {}
    for name, path, extra in (("cos", scores, ["--backend", "cosine", "--score-norm", "none"]),
                              ("plda", other, ["--backend", "lda200+plda", "--score-norm", "snorm", "--compat", "kaldi"])):
        res = tmp_path / name
        r = _run("--scores", str(path), "--trials", str(trials), "--out", str(res / "metrics.json"),
                 "--det", str(res / "det.png"), *extra)
        assert r.returncode == 0, r.stderr
        results[name] = res / "metrics.json"
    md = tmp_path / "RESULTS.md"
    r = subprocess.run([sys.executable, "-m", "pyspeaker", "report", "--out", str(md),
                        *[x for n, p in results.items() for x in ("--system", f"{n}={p}")]],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "EER (%)" in r.stdout and "minDCF (p_target=0.01)" in r.stdout
    text = md.read_text()
    assert text.startswith("# Results\n\n| system | trials | back-end | norm | EER (%) |")
    assert f"| cos | {trials} (13 lines) | cosine | none | 25.00 | 0.6000 | 0.6000 | 5 | 8 |" in text
    assert "| plda |" in text and "lda200+plda | snorm |" in text and "(kaldi)" in text
    assert "![cos: DET curve](cos/det.png)" in text and "![plda: DET curve](plda/det.png)" in text

    out = tmp_path / "det_all.png"
    r = subprocess.run([sys.executable, "-m", "pyspeaker", "plot-det", "--trials", str(trials), "--out", str(out),
                        "--system", f"cos={scores}", "--system", f"other={other}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 10_000
    r = subprocess.run([sys.executable, "-m", "pyspeaker", "plot-det", "--trials", str(trials), "--out", str(out),
                        "--system", "nameonly"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "--system expects NAME=SCORES" in r.stderr


def test_report_selects_the_system_on_validation_metrics_not_test(tmp_path):
    """The row with the lowest validation minDCF(0.01) is marked, even when another row is better on
    the test trials; ties on minDCF go to the lower validation EER."""
    def metrics(name, eer, dcf):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"eer": eer, "min_dcf": {"0.01": dcf, "0.05": dcf / 2}, "trials": "t",
                                    "backend": "plda", "score_norm": "none", "num_target": 5, "num_nontarget": 8}))
        return path
    rows = {"a": (metrics("a_test", 5.0, 0.5), metrics("a_valid", 9.0, 0.80)),     # best on test
            "b": (metrics("b_test", 7.0, 0.6), metrics("b_valid", 8.0, 0.70)),     # tie on valid minDCF ...
            "c": (metrics("c_test", 6.0, 0.7), metrics("c_valid", 7.5, 0.70))}     # ... c has the lower EER
    args = [sys.executable, "-m", "pyspeaker", "report", "--out", str(tmp_path / "RESULTS.md")]
    for name, (test, valid) in rows.items():
        args += ["--system", f"{name}={test}", "--valid-metrics", str(valid)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| valid EER (%) | valid minDCF (p_target=0.01) | selected |" in text
    assert "| c | t | plda | none | 6.00 | 0.7000 | 0.3500 | 5 | 8 | 7.50 | 0.7000 | * |" in text
    assert "| a | t | plda | none | 5.00 | 0.5000 | 0.2500 | 5 | 8 | 9.00 | 0.8000 |  |" in text
    note = ("selected (*) on the validation trials, not the test trials: c, plda, norm none (lowest validation "
            "minDCF(p_target=0.01), then EER): test EER 6.00 %, minDCF(p_target=0.01) 0.7000.")
    assert note in text and r.stdout.rstrip().endswith(note)
    # rows of another trial list are another task: one selected row per list
    other = tmp_path / "d_test.json"
    other.write_text(json.dumps({**json.loads(rows["a"][0].read_text()), "trials": "u"}))
    r = subprocess.run(args + ["--system", f"d={other}", "--valid-metrics", str(rows["a"][1])],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("selected (*) for ") == 2, r.stdout
    assert "selected (*) for u on the validation trials, not the test trials: d," in r.stdout, r.stdout
    # one --valid-metrics per --system, or none
    r = subprocess.run(args[:-2], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "--valid-metrics given 2 times for 3 --system rows" in r.stderr, r.stderr
