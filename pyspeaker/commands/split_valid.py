"""``pyspeaker split-valid``: hold out part of a training data dir as a validation set.

Writes two new data dirs (never the input): ``--valid-out`` with the held-out utterances and a
Kaldi ``trials`` file of their pairs (all of them, or a seeded sample of at most ``--max-trials``),
and ``--train-out`` with the rest. What is held out: ``--num-speakers N`` speakers (unseen in
training, as test speakers usually are), or, for corpora with too few speakers to spare,
``--num-utterances N`` utterances of every speaker (the speakers stay in training). See
:mod:`pyspeaker.data.heldout`.
"""
from __future__ import annotations

from pathlib import Path

import click


@click.command(name="split-valid")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The training data dir (read only).")
@click.option("--num-speakers", type=int, default=0,
              help="Speakers to hold out (at least 2 must remain).")
@click.option("--num-utterances", type=int, default=0,
              help="Instead of speakers: utterances of every speaker to hold out (at least 2; each speaker "
                   "keeps at least 1 to train on).")
@click.option("--valid-out", required=True, type=click.Path(path_type=Path), help="Output validation data dir.")
@click.option("--train-out", required=True, type=click.Path(path_type=Path), help="Output data dir of the rest.")
@click.option("--seed", type=int, default=0, show_default=True, help="What is held out, which trials (deterministic).")
@click.option("--max-trials", type=int, default=20000, show_default=True,
              help="At most this many validation trials (a seeded sample, up to half target pairs).")
def command(data_dir, num_speakers, num_utterances, valid_out, train_out, seed, max_trials):
    """Split a training data dir into a validation set (with trials) and the rest: held-out speakers
    (--num-speakers) or held-out utterances of every speaker (--num-utterances)."""
    from pyspeaker.data.heldout import split_valid
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import get_logger, setup_logging

    setup_logging()
    refuse_overlap({"--valid-out": valid_out, "--train-out": train_out}, {"--data-dir": data_dir})
    refuse_overlap({"--valid-out": valid_out}, {"--train-out": train_out})
    n_spk, n_utts, n_trials, n_train = split_valid(data_dir, valid_out, train_out, num_speakers, seed, max_trials,
                                                   num_utterances=num_utterances)
    get_logger("split-valid").info("%s: %d utterances of %d %s speakers (%d trials) -> %s; %d training speakers -> %s",
                                   data_dir, n_utts, n_spk, "held-out" if num_speakers else "training", n_trials,
                                   valid_out, n_train, train_out)
