"""The Free Spoken Digit Dataset (FSDD) -> Kaldi data dirs and trials for two protocols (the fsdd recipe's stage 0).

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
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from pyspeaker.data.kaldi_dir import write_data_dir
from pyspeaker.data.trials import Trials, write_trials
from pyspeaker.errors import ConfigError, DataError
from pyspeaker.log import get_logger

log = get_logger(__name__)

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
        summary.num_trials, summary.num_target = len(t.enroll), int(t.labels.sum())
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
