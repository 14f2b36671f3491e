"""``pyspeaker compute-metrics``: EER and minDCF of a scores file against labelled trials.

Score files: ours (``<enroll> <test> <score>``), Kaldi's (``utt1 utt2 score``, the same layout) or
WeSpeaker's (``<enroll> <test> <score> target|nontarget``; its labels must agree with the trials).
Trials: Kaldi or VoxCeleb lists. Both files are streamed in blocks and kept as integer codes
(:func:`pyspeaker.data.trials.read_trials`, :func:`pyspeaker.scoring.lists.read_scores`), so 10 million
trials stay well under 2 GB. Scores are matched
to trials by position when the two files list the same pairs in the same order (the usual case:
``pyspeaker score`` keeps trial order), otherwise by the pair. Every trial needs a score and every
score a trial; the first offender is reported with its file and line.

Results are printed, and optionally written as JSON (which names the trial list with its line
count, the back-end, the normalisation, p_target and costs) plus DET / histogram plots. The
back-end and normalisation come from ``--backend``/``--score-norm`` or else from the
``scores.json`` sidecar that ``pyspeaker score`` writes. ``--compat kaldi`` reports Kaldi's
``compute-eer`` EER and ``sid/compute_min_dcf.py`` minDCF instead of the tie-aware ones.
``--calibrated`` (or a sidecar saying so) adds actual DCF, Cllr and min Cllr.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from pyspeaker.errors import DataError
from pyspeaker.log import get_logger

log = get_logger(__name__)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no infinity


def _dcf_name(p: float, c_miss: float, c_fa: float, kind: str = "minDCF") -> str:
    costs = "" if (c_miss, c_fa) == (1.0, 1.0) else f", c_miss={c_miss:g}, c_fa={c_fa:g}"
    return f"{kind}(p_target={p:g}{costs})"


def load_matched(scores_path: Path, trials_path: Path):
    """``(scores in trial order, labels, trials, number of score lines)`` of a scores file and its
    trial list; labels come from the trials, or from the scores' 4th field (WeSpeaker)."""
    from pyspeaker.data.trials import read_trials
    from pyspeaker.scoring.lists import check_labels, match, read_scores

    trials = read_trials(trials_path)
    codes = read_scores(scores_path, trials.vocab)
    index = match(trials, codes)
    check_labels(trials, codes, index)
    labels = trials.labels
    if labels is None and codes.labels is not None:
        labels = codes.labels if index is None else codes.labels[index]
    if labels is None:
        raise DataError("trials have no target/nontarget labels, so no error rates can be computed",
                        path=trials_path)
    matched = codes.scores if index is None else codes.scores[index]
    return matched, labels, trials, len(codes)


@dataclass
class _Options:
    """The command's options (see the click decorators below)."""

    scores_path: Path
    trials_path: Path
    p_targets: tuple[float, ...]
    c_miss: float
    c_fa: float
    compat: str
    calibrated: bool | None
    backend_label: str | None
    norm_label: str | None
    out: Path | None
    det: Path | None
    hist: Path | None
    label: str | None


@dataclass
class _Metrics:
    """EER (fractions), thresholds, minDCF ``{p: (value, threshold)}`` and, for calibrated scores,
    ``act_dcf`` / ``cllr`` / ``min_cllr``."""

    eer: float
    eer_threshold: float
    eer_tie_aware: float
    eer_kaldi: float
    dcf: dict
    calibration: dict | None = None


def _split(matched: np.ndarray, labels: np.ndarray, trials_path: Path) -> tuple[np.ndarray, np.ndarray]:
    tgt, non = matched[labels], matched[~labels]
    if tgt.size == 0 or non.size == 0:
        raise DataError(f"need both target and non-target trials, got {tgt.size} target and {non.size} non-target",
                        path=trials_path)
    return tgt, non


def _read_labels(o: _Options, num_scores: int) -> dict:
    """Fill in the back-end, normalisation and calibration from the scores.json sidecar where the
    options leave them open; returns the sidecar ({} when there is none that fits)."""
    from pyspeaker.scoring.pipeline import read_sidecar

    sidecar = read_sidecar(o.scores_path, num_scores) or {}
    o.backend_label = o.backend_label or sidecar.get("backend")
    if o.norm_label is None and sidecar.get("score_norm"):
        o.norm_label = sidecar["score_norm"] + (f"(top_n={sidecar['top_n']})" if sidecar.get("top_n") else "")
    if o.calibrated is None:
        o.calibrated = bool(sidecar.get("calibrated", False))
    return sidecar


def _compute(o: _Options, matched: np.ndarray, labels: np.ndarray, tgt: np.ndarray, non: np.ndarray) -> _Metrics:
    from pyspeaker.metrics import (act_dcf, cllr, eer_from_rates, error_rates, kaldi_eer, kaldi_min_dcf, min_cllr,
                                   min_dcf_from_rates)

    rates = error_rates(tgt, non)
    eer_tie_aware, threshold = eer_from_rates(*rates)
    dcf = {p: min_dcf_from_rates(*rates, p, o.c_miss, o.c_fa) for p in o.p_targets}
    del rates
    eer_kaldi, kaldi_threshold = kaldi_eer(tgt, non)
    m = _Metrics(eer_tie_aware, threshold, eer_tie_aware, eer_kaldi, dcf)
    if o.compat == "kaldi":
        m.eer, m.eer_threshold = eer_kaldi, kaldi_threshold
        m.dcf = {p: kaldi_min_dcf(matched, labels, p, o.c_miss, o.c_fa) for p in o.p_targets}
    if o.calibrated:
        m.calibration = {"act_dcf": {p: act_dcf(tgt, non, p, o.c_miss, o.c_fa) for p in o.p_targets},
                         "cllr": cllr(tgt, non), "min_cllr": min_cllr(tgt, non)}
    return m


def _print(o: _Options, m: _Metrics, trials, tgt: np.ndarray, non: np.ndarray) -> None:
    echo = click.echo
    echo(f"trials: {o.trials_path} ({trials.num_lines} lines): {tgt.size} target, {non.size} nontarget")
    echo(f"scores: {o.scores_path}")
    if o.backend_label or o.norm_label:
        echo(f"back-end: {o.backend_label or 'unknown'}, score normalisation: {o.norm_label or 'unknown'}")
    if o.compat == "kaldi":
        echo("compat: kaldi (EER as compute-eer, minDCF as sid/compute_min_dcf.py)")
    echo(f"EER: {100 * m.eer:.2f} %")
    for p, (value, _) in m.dcf.items():
        echo(f"{_dcf_name(p, o.c_miss, o.c_fa)}: {value:.4f}")
    echo(f"EER threshold: {m.eer_threshold:.6f}")
    for p, (_, thr) in m.dcf.items():
        echo(f"{_dcf_name(p, o.c_miss, o.c_fa)} threshold: {thr:.6f}")
    if o.compat == "kaldi":
        echo(f"EER (tie-aware, interpolated): {100 * m.eer_tie_aware:.2f} %")
    else:
        echo(f"EER (Kaldi compute-eer): {100 * m.eer_kaldi:.2f} %")
    if m.calibration is not None:
        for p, (value, thr) in m.calibration["act_dcf"].items():
            echo(f"{_dcf_name(p, o.c_miss, o.c_fa, 'actDCF')}: {value:.4f} (LLR threshold {thr:.4f})")
        echo(f"Cllr: {m.calibration['cllr']:.4f} bits")
        echo(f"min Cllr: {m.calibration['min_cllr']:.4f} bits")


def _result(o: _Options, m: _Metrics, trials, tgt: np.ndarray, non: np.ndarray, sidecar: dict) -> dict:
    """metrics.json: EER in percent, minDCF per p_target, thresholds, counts, and what was scored how."""
    result = {
        "eer": 100 * m.eer, "eer_threshold": _finite_or_none(m.eer_threshold),
        "min_dcf": {f"{p:g}": v for p, (v, _) in m.dcf.items()},
        "num_target": int(tgt.size), "num_nontarget": int(non.size), "trials": str(o.trials_path),
        "min_dcf_threshold": {f"{p:g}": _finite_or_none(t) for p, (_, t) in m.dcf.items()},
        "p_target": list(o.p_targets), "c_miss": o.c_miss, "c_fa": o.c_fa, "eer_kaldi": 100 * m.eer_kaldi,
        "trials_lines": trials.num_lines, "scores": str(o.scores_path), "backend": o.backend_label,
        "score_norm": o.norm_label, "compat": o.compat,
        "eer_method": "kaldi compute-eer" if o.compat == "kaldi" else "tie-aware, interpolated",
        "eer_tie_aware": 100 * m.eer_tie_aware, "calibrated": bool(o.calibrated),
    }
    if m.calibration is not None:
        result["act_dcf"] = {f"{p:g}": v for p, (v, _) in m.calibration["act_dcf"].items()}
        result["act_dcf_threshold"] = {f"{p:g}": t for p, (_, t) in m.calibration["act_dcf"].items()}
        result["cllr"] = m.calibration["cllr"]
        result["min_cllr"] = m.calibration["min_cllr"]
    if sidecar:
        result["scoring"] = {k: sidecar.get(k) for k in ("backend_dir", "embeddings", "cohort", "cohort_size",
                                                         "top_n", "calibration") if sidecar.get(k) is not None}
    return result


def _plots(o: _Options, m: _Metrics, tgt: np.ndarray, non: np.ndarray) -> None:
    from pyspeaker.plots import plot_det, plot_score_histogram

    name = o.label or os.path.basename(os.path.dirname(os.path.abspath(o.scores_path))) or o.scores_path.name
    if o.det is not None:
        plot_det({name: (tgt, non)}, o.det, p_targets=o.p_targets, c_miss=o.c_miss, c_fa=o.c_fa,
                 title=f"DET: {o.trials_path.name} (o = EER)")
        log.info("wrote %s", o.det)
    if o.hist is not None:
        thresholds = {"EER": m.eer_threshold}
        thresholds.update({_dcf_name(p, o.c_miss, o.c_fa): t for p, (_, t) in m.dcf.items()})
        if m.calibration is not None:
            thresholds.update({f"Bayes p_target={p:g}": t for p, (_, t) in m.calibration["act_dcf"].items()})
        plot_score_histogram(tgt, non, o.hist, thresholds=thresholds,
                             title=f"Scores: {name} on {o.trials_path.name}")
        log.info("wrote %s", o.hist)


@click.command(name="compute-metrics")
@click.option("--scores", "scores_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Scores file: '<enroll> <test> <score>' lines (ours, Kaldi's), or WeSpeaker's "
                   "'<enroll> <test> <score> target|nontarget'.")
@click.option("--trials", "trials_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Labelled trial list: Kaldi '<enroll> <test> target|nontarget' or VoxCeleb '<1|0> <p1> <p2>'.")
@click.option("--p-target", "p_targets", multiple=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Prior of a target trial for minDCF; repeat for several (default: 0.01 and 0.05).")
@click.option("--c-miss", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Cost of a miss in the DCF.")
@click.option("--c-fa", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Cost of a false alarm in the DCF.")
@click.option("--compat", type=click.Choice(["none", "kaldi"]), default="none", show_default=True,
              help="kaldi: report EER as Kaldi's compute-eer and minDCF as Kaldi's sid/compute_min_dcf.py "
                   "(no tie handling, no interpolation), to compare with Kaldi recipes.")
@click.option("--calibrated/--uncalibrated", default=None,
              help="Scores are log-likelihood ratios: also report actual DCF, Cllr and min Cllr "
                   "(default: what the scores.json sidecar says, else uncalibrated).")
@click.option("--backend", "backend_label", default=None,
              help="Back-end name recorded in the results (default: from the scores.json sidecar).")
@click.option("--score-norm", "norm_label", default=None,
              help="Score normalisation recorded in the results (default: from the scores.json sidecar).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results as JSON here (EER in percent, minDCF per p_target, thresholds, counts).")
@click.option("--det", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a DET curve (PNG) with the EER and minDCF points marked.")
@click.option("--hist", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write target / non-target score histograms (PNG) with the EER and minDCF thresholds.")
@click.option("--label", default=None,
              help="System name in the plots' legends (default: the scores file's folder name).")
def command(**kwargs) -> None:
    """Compute EER and minDCF of the --scores against the labels of the --trials."""
    import json

    from pyspeaker.fileio import refuse_overlap, write_text_atomic
    from pyspeaker.log import setup_logging
    from pyspeaker.scoring.pipeline import sidecar_path

    setup_logging()
    o = _Options(**kwargs)
    refuse_overlap({"--out": o.out, "--det": o.det, "--hist": o.hist},
                   {"--scores": o.scores_path, "--scores (its scores.json)": sidecar_path(o.scores_path),
                    "--trials": o.trials_path})
    start = time.perf_counter()
    o.p_targets = tuple(dict.fromkeys(o.p_targets or (0.01, 0.05)))
    matched, labels, trials, num_scores = load_matched(o.scores_path, o.trials_path)
    tgt, non = _split(matched, labels, o.trials_path)
    sidecar = _read_labels(o, num_scores)
    metrics = _compute(o, matched, labels, tgt, non)
    log.info("metrics of %d trials from %s in %.2f s", len(matched), o.trials_path, time.perf_counter() - start)
    _print(o, metrics, trials, tgt, non)
    if o.out is not None:
        write_text_atomic(o.out, json.dumps(_result(o, metrics, trials, tgt, non, sidecar), indent=2) + "\n")
        log.info("wrote %s", o.out)
    if o.det is not None or o.hist is not None:
        _plots(o, metrics, tgt, non)
