"""`pyspeaker train`: stage 2, train a speaker-embedding network from a feature store."""
from __future__ import annotations

import click


@click.command(name="train")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="Training YAML (sections model, loss, data, optim, train); see conf/*.yaml.")
@click.option("--features", required=True, type=click.Path(file_okay=False),
              help="Training feature store directory (features/<feat-id>/<set>) made by make-features.")
@click.option("--exp-dir", required=True, type=click.Path(file_okay=False),
              help="Experiment directory for config.yaml, train.log, metrics.tsv and checkpoints/.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set optim.lr=0.01 --set train.max_epoch=5 (repeatable).")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--progress/--no-progress", default=None, help="Progress bar per epoch (default: when on a terminal).")
def command(config_path, features, exp_dir, overrides, threads, progress):
    """Train a speaker-embedding network on random fixed-length crops of stored features.

    The number of speakers and the feature dimension come from the feature store. Writes
    EXP_DIR/config.yaml (merged config), train.log, metrics.tsv (loss, accuracy per epoch) and
    checkpoints/{init,epoch_NNNN,final}.pt. Uses CUDA when present, the CPU otherwise.
    """
    import torch

    from pyspeaker.log import setup_logging
    from pyspeaker.training.config import load_config
    from pyspeaker.training.trainer import train

    setup_logging()
    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(config_path, list(overrides))
    final = train(cfg, features, exp_dir, progress=progress)
    click.echo(str(final))
