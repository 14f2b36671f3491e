#!/usr/bin/env python3
"""The Free Spoken Digit Dataset (FSDD) -> Kaldi data dirs and trials for two protocols (the fsdd recipe's stage 0).

    python local/prepare_fsdd.py --fsdd-dir /corpora/fsdd --out data      (--help: every option)

FSDD (a clone of github.com/Jakobovski/free-spoken-digit-dataset) holds
``recordings/{digit}_{speaker}_{index}.wav``: 6 speakers x 10 digits x 50 repetitions, 8 kHz mono.

- **open set**: train on every speaker but ``open_test_speakers``; verify on those unseen ones.
- **closed set**: train on repetitions not in ``heldout_reps`` of all speakers; verify on the
  held-out repetitions (indices 0-4 are FSDD's customary test portion).

Trials are every unordered pair of distinct test utterances, so no sampling choice enters the
figures. Utterance ids are ``<speaker>-<digit>_<index>`` (the speaker prefix keeps utt2spk and
spk2utt in the same sorted order).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

# Lets the script run as `python local/prepare_fsdd.py` without installing the package.
_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import click  # noqa: E402
import numpy as np  # noqa: E402

from pyspeaker.data import Trials, write_data_dir, write_trials  # noqa: E402
from pyspeaker.errors import ConfigError, DataError  # noqa: E402
from pyspeaker.log import get_logger  # noqa: E402

log = get_logger("local.prepare_fsdd")

FILE_NAME = re.compile(r"(\d)_([A-Za-z]+)_(\d+)\.wav")
SOURCE = "https://github.com/Jakobovski/free-spoken-digit-dataset"


@dataclass(frozen=True)
class Recording:
    speaker: str
    digit: int
    index: int
    path: str

    @property
    def utt(self) -> str:
        return f"{self.speaker}-{self.digit}_{self.index}"


@dataclass
class SetSummary:
    path: str
    num_utts: int
    num_speakers: int
    num_trials: int = 0
    num_target: int = 0


def scan_recordings(fsdd_dir: str | os.PathLike) -> list[Recording]:
    """Every ``{digit}_{speaker}_{index}.wav`` of ``<fsdd>/recordings`` (or of ``fsdd_dir`` itself)."""
    root = Path(fsdd_dir)
    rec_dir = root / "recordings" if (root / "recordings").is_dir() else root
    if not rec_dir.is_dir():
        raise DataError(f"FSDD not found (clone {SOURCE} and give its location)", path=root)
    found, skipped = [], 0
    for entry in sorted(os.scandir(rec_dir), key=lambda e: e.name):
        m = FILE_NAME.fullmatch(entry.name)
        if m is None:
            skipped += entry.name.endswith(".wav")
            continue
        found.append(Recording(m.group(2), int(m.group(1)), int(m.group(3)), os.path.abspath(entry.path)))
    if not found:
        raise DataError("no FSDD recordings ({digit}_{speaker}_{index}.wav) here", path=rec_dir)
    if skipped:
        log.warning("%s: %d .wav file(s) not named {digit}_{speaker}_{index}.wav were skipped", rec_dir, skipped)
    return found


def all_pair_trials(utt2spk: dict[str, str]) -> Trials:
    """Every unordered pair of distinct utterances, in sorted order, labelled by speaker."""
    utts = sorted(utt2spk)
    pairs = list(combinations(utts, 2))
    enroll = np.array([a for a, _ in pairs])
    test = np.array([b for _, b in pairs])
    labels = np.array([utt2spk[a] == utt2spk[b] for a, b in pairs], dtype=bool)
    return Trials(enroll=enroll, test=test, labels=labels)


def _write_set(out_dir: Path, recs: list[Recording], trials: bool) -> SetSummary:
    wav = {r.utt: r.path for r in recs}
    utt2spk = {r.utt: r.speaker for r in recs}
    write_data_dir(out_dir, wav, utt2spk)
    summary = SetSummary(os.fspath(out_dir), len(recs), len(set(utt2spk.values())))
    if trials:
        t = all_pair_trials(utt2spk)
        write_trials(out_dir / "trials", t)
        summary.num_trials, summary.num_target = len(t), int(t.labels.sum())
    return summary


def prepare_fsdd(fsdd_dir: str | os.PathLike, data_root: str | os.PathLike, *,
                 open_test_speakers: tuple[str, ...] = ("theo", "yweweler"),
                 heldout_reps: tuple[int, ...] = (0, 1, 2, 3, 4), max_reps: int | None = None,
                 prefix: str = "fsdd") -> list[SetSummary]:
    """Write ``<data_root>/<prefix>_{open,closed}_{train,test}`` (+ ``trials`` in each test set).

    ``max_reps``: use only repetitions ``0 .. max_reps-1`` of each speaker and digit (a quick run).
    """
    recs = scan_recordings(fsdd_dir)
    if max_reps is not None:
        recs = [r for r in recs if r.index < max_reps]
    speakers = sorted({r.speaker for r in recs})
    unknown = sorted(set(open_test_speakers) - set(speakers))
    if unknown:
        raise ConfigError(f"open-set test speaker(s) {', '.join(unknown)} not in FSDD (have: {', '.join(speakers)})")
    if not 0 < len(set(open_test_speakers)) < len(speakers):
        raise ConfigError(f"the open set needs 1 to {len(speakers) - 1} test speakers, got {len(open_test_speakers)}")
    held = set(heldout_reps)
    splits = {
        "open_train": [r for r in recs if r.speaker not in open_test_speakers],
        "open_test": [r for r in recs if r.speaker in open_test_speakers],
        "closed_train": [r for r in recs if r.index not in held],
        "closed_test": [r for r in recs if r.index in held],
    }
    empty = [name for name, part in splits.items() if not part]
    if empty:
        raise ConfigError(f"data dir(s) {', '.join(prefix + '_' + e for e in empty)} would be empty "
                          f"(held-out repetitions: "
                          f"{sorted(held)}; recordings have indices {min(r.index for r in recs)}-"
                          f"{max(r.index for r in recs)})")
    root = Path(data_root)
    return [_write_set(root / f"{prefix}_{name}", part, trials=name.endswith("test"))
            for name, part in splits.items()]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.replace(",", " ").split())


@click.command(name="prepare_fsdd.py", context_settings={"help_option_names": ["-h", "--help"],
                                                        "max_content_width": 100})
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
def main(fsdd_dir, data_root, open_test_speakers, heldout_reps, max_reps, prefix) -> None:
    """FSDD -> Kaldi data dirs: write <out>/<prefix>_{open,closed}_{train,test} and a trials file
    (every pair of test utterances, Kaldi format) in each test set.

    Open set: train on the other speakers, verify on --open-test-speakers. Closed set: all
    speakers; the --heldout-reps repetitions are verified, the others trained on.
    """
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


if __name__ == "__main__":
    from pyspeaker.cli import run_script

    run_script(main)
