"""``pyspeaker calibrate``: linear calibration of scores into log-likelihood ratios.

``pyspeaker calibrate train`` fits ``llr = scale * score + offset`` by prior-weighted logistic
regression on a calibration trial list (scores + labelled trials) and writes calibration.json;
``pyspeaker calibrate apply`` rewrites a scores file with calibrated scores (the same lines, score
field replaced), and ``pyspeaker score --calibration`` applies it while scoring.
"""
from __future__ import annotations

from pathlib import Path

import click


@click.group(name="calibrate")
def command() -> None:
    """Linear (logistic-regression) calibration: scores -> log-likelihood ratios."""


@command.command(name="train")
@click.option("--scores", "scores_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Scores of the calibration trials ('<enroll> <test> <score>', or WeSpeaker's with a label).")
@click.option("--trials", "trials_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Labelled calibration trial list (Kaldi or VoxCeleb format).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output calibration.json (scale, offset, prior, counts).")
@click.option("--p-target", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5,
              show_default=True, help="Prior weighting the logistic regression (0.5 minimises Cllr).")
def train(scores_path: Path, trials_path: Path, out: Path, p_target: float) -> None:
    """Fit llr = scale * score + offset on labelled calibration trials."""
    from pyspeaker.commands.compute_metrics import load_matched
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.metrics import cllr
    from pyspeaker.scoring.calibration import train_calibration

    setup_logging()
    refuse_overlap({"--out": out}, {"--scores": scores_path, "--trials": trials_path})
    matched, labels, _, _ = load_matched(scores_path, trials_path)
    cal = train_calibration(matched[labels], matched[~labels], p_target=p_target)
    if matched[labels].min() > matched[~labels].max():
        # no error on these trials bounds the fit: harder trials (unseen speakers) get over-confident llrs
        get_logger("calibrate").warning(
            "%s: every target score is above every non-target score on these %d trials: the calibration is "
            "as confident as the trial counts allow, and over-confident on trials harder than these (use "
            "calibration trials like the test's, e.g. held-out speakers for unseen test speakers)",
            scores_path, int(labels.size))
    cal.trials, cal.scores = str(trials_path), str(scores_path)
    cal.save(out)
    llr = cal.apply(matched)
    get_logger("calibrate").info("calibration on %d target and %d non-target trials: llr = %.6g * score + %.6g "
                                 "(Cllr %.4f bits on these trials) -> %s", cal.num_target, cal.num_nontarget,
                                 cal.scale, cal.offset, cllr(llr[labels], llr[~labels]), out)
    click.echo(f"scale: {cal.scale:.6g}")
    click.echo(f"offset: {cal.offset:.6g}")


def apply_to_file(scores_path: Path, out: Path, cal, precision: int = 6) -> tuple[int, int]:
    """Rewrite a scores file with ``cal`` applied to its score field (the other fields kept as they
    are, blank lines left out); returns ``(lines, bytes)``."""
    from pyspeaker.fileio import atomic_file
    from pyspeaker.data.columns import write_lines
    from pyspeaker.scoring.lists import score_blocks, score_layout, score_strings

    layout, _ = score_layout(scores_path, any_fields=True)
    lines = 0
    with atomic_file(out) as tmp:
        with open(tmp, "wb") as f:
            for block, values in score_blocks(scores_path, layout):
                columns = [block.column(name) for name in layout.names]
                columns[2] = score_strings(cal.apply(values), precision)
                write_lines(f, columns)
                lines += len(block)
        size = tmp.stat().st_size
    return lines, size


@command.command(name="apply")
@click.option("--scores", "scores_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Scores to calibrate (any layout with the score in field 3).")
@click.option("--calibration", "calibration_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="calibration.json from 'pyspeaker calibrate train'.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output scores file (same lines, score replaced by the LLR) and its scores.json sidecar.")
def apply(scores_path: Path, calibration_path: Path, out: Path) -> None:
    """Write calibrated scores (log-likelihood ratios)."""
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.scoring.calibration import Calibration
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.scoring.pipeline import check_sidecar_free, read_sidecar, sidecar_path, write_sidecar

    setup_logging()
    refuse_overlap({"--out": out, "--out (its scores.json)": sidecar_path(out)},
                   {"--scores": scores_path, "--scores (its scores.json)": sidecar_path(scores_path),
                    "--calibration": calibration_path})
    check_sidecar_free(out)
    cal = Calibration.load(calibration_path)
    source = read_sidecar(scores_path) or {}
    lines, size = apply_to_file(scores_path, out, cal)
    write_sidecar(out, {**source, "scores": str(out), "num_trials": lines, "scores_bytes": size,
                        "uncalibrated_scores": str(scores_path), "calibration": str(calibration_path),
                        "calibrated": True})
    get_logger("calibrate").info("calibrated %d scores (llr = %.6g * score + %.6g) -> %s", lines, cal.scale,
                                 cal.offset, out)
