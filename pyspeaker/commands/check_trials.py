"""``pyspeaker check-trials``: a trial list against its data dirs, and train / test speaker overlap.

Every enroll id must be an utterance of ``--enroll-dir`` (else of ``--test-dir``) and every test id
one of ``--test-dir``; the first trial that is not is one error naming its line. With
``--train-dir``, speakers of the training dir that also speak in the test (or enroll) dir are an
error unless ``--allow-shared-speakers`` (then a warning). Nothing is written.
"""
from __future__ import annotations

from pathlib import Path

import click

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command(name="check-trials")
@click.option("--trials", "trials_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--test-dir", required=True, type=_DIR, help="Data dir of the test utterances.")
@click.option("--enroll-dir", type=_DIR, default=None, help="Data dir of the enroll utterances (default: the test dir).")
@click.option("--train-dir", type=_DIR, default=None, help="Training data dir: refuse speakers it shares with the others.")
@click.option("--allow-shared-speakers/--no-allow-shared-speakers", default=False, show_default=True,
              help="Only warn when training and test speakers overlap.")
def command(trials_path, test_dir, enroll_dir, train_dir, allow_shared_speakers):
    """Check that the trials name utterances of the data dirs (and training speakers are not tested)."""
    from pyspeaker.data.heldout import check_trials_ids, shared_speakers
    from pyspeaker.errors import DataError
    from pyspeaker.log import get_logger, setup_logging

    setup_logging()
    log = get_logger("check-trials")
    n = check_trials_ids(trials_path, test_dir, enroll_dir)
    log.info("%s: all %d trials name utterances of the data dirs", trials_path, n)
    if train_dir is not None:
        others = [test_dir] + ([enroll_dir] if enroll_dir else [])
        shared = shared_speakers(train_dir, *others)
        if shared:
            what = (f"{len(shared)} speakers of {train_dir} also speak in {' / '.join(map(str, others))} "
                    f"(first: {shared[0]})")
            if not allow_shared_speakers:
                raise DataError(f"{what}: the test would measure training speakers (give --allow-shared-speakers "
                                f"true to run anyway)", path=Path(train_dir) / "utt2spk")
            log.warning("%s; running anyway (--allow-shared-speakers)", what)
