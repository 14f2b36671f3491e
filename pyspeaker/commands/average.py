"""`pyspeaker average`: average the last N epoch checkpoints of a training run into one model."""
from __future__ import annotations

import click


@click.command(name="average")
@click.option("--exp-dir", type=click.Path(file_okay=False), default=None,
              help="Experiment directory: average its last --last epoch checkpoints (checkpoints/epoch_NNNN.pt).")
@click.option("--last", "last_n", type=int, default=5, show_default=True, help="How many of the last epochs.")
@click.option("--checkpoint", "paths", multiple=True, type=click.Path(dir_okay=False),
              help="Average these checkpoints instead (repeatable; the last one gives epoch and settings).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output checkpoint (default EXP_DIR/checkpoints/avg_last<N>.pt).")
def command(exp_dir, last_n, paths, out):
    """Average model weights of several checkpoints (as Kaldi nnet3-average / WeSpeaker average_model).

    The result is a checkpoint like final.pt (model, model_options, config, speakers, feat_id, epoch
    of the last one, plus averaged_from), usable wherever final.pt is (pyspeaker extract).
    BatchNorm running statistics are averaged too; step counters come from the last checkpoint.
    """
    from pathlib import Path

    from pyspeaker.errors import ConfigError, DataError
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.training.checkpoint import average_checkpoints, epoch_checkpoints

    setup_logging()
    log = get_logger("pyspeaker.commands.average")
    if bool(paths) == bool(exp_dir):
        raise ConfigError("give --exp-dir (with --last N) or --checkpoint paths, not both")
    if paths:
        chosen = [Path(p) for p in paths]
        if out is None:
            raise ConfigError("--out is needed with --checkpoint")
    else:
        if last_n < 1:
            raise ConfigError(f"--last must be >= 1, got {last_n}")
        found = epoch_checkpoints(Path(exp_dir) / "checkpoints")
        if len(found) < last_n:
            raise DataError(f"--last {last_n} but there are {len(found)} epoch checkpoints "
                            f"({', '.join(p.name for _, p in found) or 'none'})", path=Path(exp_dir) / "checkpoints")
        chosen = [p for _, p in found[-last_n:]]
        out = out or Path(exp_dir) / "checkpoints" / f"avg_last{last_n}.pt"
    refuse_overlap({"--out": out}, {f"--checkpoint {p.name}": p for p in chosen})
    state = average_checkpoints(chosen, out)
    log.info("averaged %d checkpoints (%s) -> %s (epoch %s)", len(chosen), ", ".join(p.name for p in chosen), out,
             state.get("epoch"))
    click.echo(str(out))
