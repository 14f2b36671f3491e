"""``pyspeaker prepare-fsdd``: the Free Spoken Digit Dataset -> Kaldi data dirs and trials (open and closed set)."""
from __future__ import annotations

import click


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.replace(",", " ").split())


@click.command(name="prepare-fsdd")
@click.option("--fsdd-dir", required=True, type=click.Path(file_okay=False),
              help="A clone of github.com/Jakobovski/free-spoken-digit-dataset (with recordings/).")
@click.option("--out", "data_root", default="data", show_default=True, type=click.Path(file_okay=False),
              help="Where the data dirs go.")
@click.option("--open-test-speakers", default="theo yweweler", show_default=True,
              help="Open set: these speakers are only verified, never trained on (space or comma separated).")
@click.option("--heldout-reps", default="0 1 2 3 4", show_default=True,
              help="Closed set: these repetition indices of every speaker and digit are the test set.")
@click.option("--max-reps", type=click.IntRange(min=1), default=None,
              help="Use only repetitions 0..N-1 of each speaker and digit (a quick run; default: all 50).")
@click.option("--prefix", default="fsdd", show_default=True, help="Data dir names: <prefix>_{open,closed}_{train,test}.")
def command(fsdd_dir, data_root, open_test_speakers, heldout_reps, max_reps, prefix) -> None:
    """Write <out>/<prefix>_{open,closed}_{train,test} and a trials file (every pair of test
    utterances, Kaldi format) in each test set.

    Open set: train on the other speakers, verify on --open-test-speakers. Closed set: all
    speakers; the --heldout-reps repetitions are verified, the others trained on.
    """
    from pyspeaker.data.fsdd import prepare_fsdd
    from pathlib import Path

    from pyspeaker.errors import ConfigError
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import setup_logging

    setup_logging()
    refuse_overlap({f"--out ({prefix}_{p}_{s})": Path(data_root) / f"{prefix}_{p}_{s}"
                    for p in ("open", "closed") for s in ("train", "test")}, {"--fsdd-dir": fsdd_dir})
    try:
        reps = tuple(int(x) for x in _words(heldout_reps))
    except ValueError:
        raise ConfigError(f"--heldout-reps expects integers, got {heldout_reps!r}") from None
    for s in prepare_fsdd(fsdd_dir, data_root, open_test_speakers=_words(open_test_speakers),
                          heldout_reps=reps, max_reps=max_reps, prefix=prefix):
        trials = f", {s.num_trials} trials ({s.num_target} target)" if s.num_trials else ""
        click.echo(f"{s.path}: {s.num_utts} utterances, {s.num_speakers} speakers{trials}")
