"""``pyspeaker split-valid``: hold out N speakers of a training data dir as a validation set.

Writes two new data dirs (never the input): ``--valid-out`` with the N speakers (seeded) and a
Kaldi ``trials`` file of their utterance pairs (all of them, or a seeded sample of at most
``--max-trials``), and ``--train-out`` with the other speakers. See :mod:`pyspeaker.data.heldout`.
"""
from __future__ import annotations

from pathlib import Path

import click


@click.command(name="split-valid")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The training data dir (read only).")
@click.option("--num-speakers", required=True, type=int, help="Speakers to hold out (at least 2 must remain).")
@click.option("--valid-out", required=True, type=click.Path(path_type=Path), help="Output validation data dir.")
@click.option("--train-out", required=True, type=click.Path(path_type=Path), help="Output data dir of the rest.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which speakers and trials (deterministic).")
@click.option("--max-trials", type=int, default=20000, show_default=True,
              help="At most this many validation trials (a seeded sample, up to half target pairs).")
def command(data_dir, num_speakers, valid_out, train_out, seed, max_trials):
    """Split a training data dir into validation speakers (with trials) and the rest."""
    from pyspeaker.data.heldout import split_valid
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import get_logger, setup_logging

    setup_logging()
    refuse_overlap({"--valid-out": valid_out, "--train-out": train_out}, {"--data-dir": data_dir})
    refuse_overlap({"--valid-out": valid_out}, {"--train-out": train_out})
    n_valid, n_trials, n_train = split_valid(data_dir, valid_out, train_out, num_speakers, seed, max_trials)
    get_logger("split-valid").info("%s: %d validation speakers (%d trials) -> %s; %d training speakers -> %s",
                                   data_dir, n_valid, n_trials, valid_out, n_train, train_out)
