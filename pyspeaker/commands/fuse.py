"""``pyspeaker fuse``: logistic-regression fusion of several systems' scores into log-likelihood ratios.

``pyspeaker fuse train`` learns ``llr = sum_k weight_k * score_k + offset`` on labelled trials (a
validation list: the weights never see the test trials) and writes fusion.json; ``pyspeaker fuse
apply`` writes the fused scores of another trial list (``<enroll> <test> <llr>`` in trial order,
with a scores.json sidecar saying they are calibrated). ``fuse train --cv-out`` also writes
cross-validated (out-of-fold) fused scores of its own trials: the fair figures to compare the
fusion with the single systems on those trials (run.sh picks its best system with them). Each ``--scores`` file must score every
trial of ``--trials``; the same systems, in the same order, at training and at applying. The
logistic regression is the calibration's (``pyspeaker/scoring/calibration.py``): calibration is
fusion of one system.
"""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

_SCORES = click.Path(exists=True, dir_okay=False, path_type=Path)


def _matrix(scores_paths, trials_path):
    """``(scores [n_trials, k] in trial order, labels or None, trials)``."""
    from pyspeaker.data.trials import read_trials
    from pyspeaker.scoring.lists import check_labels, match, read_scores

    trials = read_trials(trials_path)
    columns = []
    for path in scores_paths:
        codes = read_scores(path, trials.vocab)
        index = match(trials, codes)
        check_labels(trials, codes, index)
        columns.append(codes.scores if index is None else codes.scores[index])
    return np.stack(columns, axis=1).astype(np.float64), trials.labels, trials


@click.group(name="fuse")
def command() -> None:
    """Logistic-regression fusion of systems' scores (weights learnt on labelled trials)."""


@command.command(name="train")
@click.option("--scores", "scores_paths", multiple=True, required=True, type=_SCORES,
              help="One system's scores of the training (validation) trials; repeat once per system.")
@click.option("--trials", "trials_path", required=True, type=_SCORES, help="Labelled trial list (Kaldi or VoxCeleb).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output fusion.json.")
@click.option("--name", "names", multiple=True, help="The systems' names, in --scores order (for fusion.json).")
@click.option("--p-target", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5,
              show_default=True, help="Prior weighting the logistic regression (0.5 minimises Cllr).")
@click.option("--cv-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write out-of-fold fused scores of --trials here (each fold scored by the fusion of the "
                   "other folds), with a scores.json sidecar.")
@click.option("--cv-folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Folds of --cv-out (trials dealt at random, seed 0).")
def train(scores_paths, trials_path, out, names, p_target, cv_out, cv_folds) -> None:
    """Learn the fusion weights and offset on labelled trials."""
    from pyspeaker.errors import ConfigError, DataError
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.metrics import cllr
    from pyspeaker.scoring.calibration import cross_validated_fusion, train_fusion

    setup_logging()
    if names and len(names) != len(scores_paths):
        raise ConfigError(f"--name given {len(names)} times for {len(scores_paths)} --scores files")
    outs = {"--out": out}
    if cv_out is not None:
        from pyspeaker.scoring.pipeline import check_sidecar_free, sidecar_path

        outs.update({"--cv-out": cv_out, "--cv-out (its scores.json)": sidecar_path(cv_out)})
        check_sidecar_free(cv_out)
    refuse_overlap(outs, {"--trials": trials_path, **{f"--scores {p}": p for p in scores_paths}})
    x, labels, trials = _matrix(scores_paths, trials_path)
    if labels is None:
        raise DataError("fusion needs target/nontarget labels", path=trials_path)
    # the out-of-fold scores first: a failure there leaves no fusion.json behind either
    oof = None if cv_out is None else cross_validated_fusion(x, labels, cv_folds, p_target=p_target)
    fusion = train_fusion(x[labels], x[~labels], p_target, systems=list(names) or [str(p) for p in scores_paths])
    fusion.trials = str(trials_path)
    fusion.save(out)
    llr = fusion.apply(x)
    get_logger("fuse").info("fusion of %d systems on %d target and %d non-target trials: weights %s, offset %.6g "
                            "(Cllr %.4f bits on these trials) -> %s", x.shape[1], fusion.num_target,
                            fusion.num_nontarget, " ".join(f"{w:.6g}" for w in fusion.weights), fusion.offset,
                            cllr(llr[labels], llr[~labels]), out)
    click.echo("weights: " + " ".join(f"{w:.6g}" for w in fusion.weights))
    click.echo(f"offset: {fusion.offset:.6g}")
    if oof is not None:
        _write_fused(cv_out, trials, oof, trials_path, scores_paths, out, {"cross_validated_folds": cv_folds})
        get_logger("fuse").info("out-of-fold fused scores (%d folds; Cllr %.4f bits) -> %s", cv_folds,
                                cllr(oof[labels], oof[~labels]), cv_out)


def _write_fused(out, trials, llr, trials_path, scores_paths, fusion_path, extra=None) -> None:
    """Fused llrs in trial order, and the sidecar that says they are calibrated scores of a fusion."""
    from pyspeaker.scoring.lists import write_scores
    from pyspeaker.scoring.pipeline import read_sidecar, write_sidecar

    size = write_scores(out, trials, llr)
    first = read_sidecar(scores_paths[0]) or {}
    write_sidecar(out, {"scores": str(out), "num_trials": len(trials), "scores_bytes": size,
                        "trials": str(trials_path), "backend": first.get("backend"),
                        "score_norm": first.get("score_norm"), "fused_scores": [str(p) for p in scores_paths],
                        "fusion": str(fusion_path), "calibrated": True, **(extra or {})})


@command.command(name="apply")
@click.option("--scores", "scores_paths", multiple=True, required=True, type=_SCORES,
              help="One system's scores of --trials; the systems of fusion.json, in its order.")
@click.option("--trials", "trials_path", required=True, type=_SCORES, help="The trial list the scores are of.")
@click.option("--fusion", "fusion_path", required=True, type=_SCORES, help="fusion.json from 'pyspeaker fuse train'.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output scores file (<enroll> <test> <llr>, trial order) and its scores.json sidecar.")
def apply(scores_paths, trials_path, fusion_path, out) -> None:
    """Write the fused scores (log-likelihood ratios) of a trial list."""
    from pyspeaker.errors import ConfigError
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.scoring.calibration import Fusion
    from pyspeaker.scoring.pipeline import check_sidecar_free, sidecar_path

    setup_logging()
    refuse_overlap({"--out": out, "--out (its scores.json)": sidecar_path(out)},
                   {"--trials": trials_path, "--fusion": fusion_path, **{f"--scores {p}": p for p in scores_paths}})
    check_sidecar_free(out)
    fusion = Fusion.load(fusion_path)
    if len(fusion.weights) != len(scores_paths):
        raise ConfigError(f"{fusion_path} fuses {len(fusion.weights)} systems, but {len(scores_paths)} --scores "
                          f"files were given")
    x, _, trials = _matrix(scores_paths, trials_path)
    _write_fused(out, trials, fusion.apply(x), trials_path, scores_paths, fusion_path)
    get_logger("fuse").info("fused %d systems' scores of %d trials -> %s", len(scores_paths), len(trials), out)
