"""Trial lists: Kaldi ``<enroll> <test> target|nontarget`` and VoxCeleb ``<1|0> <path1> <path2>``.

The format is detected per file from its first line; a list of ``<enroll> <test>`` pairs without
labels is read too (labels None), for scoring only. Reading splits the whole file at once and
checks field counts and labels with numpy: a million-line list takes about a second.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyspeaker.errors import DataError
from pyspeaker.fileio import atomic_file

# format name -> (field count, label column, (target, nontarget) label text, enroll col, test col)
_FORMATS = {
    "kaldi": (3, 2, ("target", "nontarget"), 0, 1),
    "voxceleb": (3, 0, ("1", "0"), 1, 2),
    "unlabeled": (2, None, None, 0, 1),
}
_IS_SPACE = np.zeros(256, dtype=bool)
_IS_SPACE[list(b" \t\n\r\x0b\x0c")] = True  # the bytes that bytes.split() splits on
_EXPECTED = "'<enroll> <test> target|nontarget', '<1|0> <path1> <path2>' or '<enroll> <test>'"


@dataclass
class Trials:
    """Trial pairs; ``labels[i]`` is True for a target trial, None when the list has no labels."""

    enroll: list[str]
    test: list[str]
    labels: np.ndarray | None = None
    path: str | None = None

    def __len__(self) -> int:
        return len(self.enroll)


def _detect_format(first: list[str]) -> str | None:
    if len(first) == 3 and first[2] in _FORMATS["kaldi"][2]:
        return "kaldi"
    if len(first) == 3 and first[0] in _FORMATS["voxceleb"][2]:
        return "voxceleb"
    if len(first) == 2:
        return "unlabeled"
    return None


def _fields_per_line(data: bytes, line_ends: np.ndarray) -> np.ndarray:
    """Number of whitespace-separated fields on each line, counted with numpy over the raw bytes
    (same whitespace as ``bytes.split``); a per-line Python split would be several times slower."""
    raw = np.frombuffer(data, np.uint8)
    space = _IS_SPACE[raw]
    field_starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
    return np.bincount(np.searchsorted(line_ends, field_starts), minlength=len(line_ends))


def read_trials(path: str | os.PathLike) -> Trials:
    """Read a Kaldi or VoxCeleb trial list; DataError (path, line, text) for any bad line."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError("trials file not found", path=path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", path=path,
                        line=data[:e.start].count(b"\n") + 1) from None
    line_ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    if data and not data.endswith(b"\n"):
        line_ends = np.append(line_ends, len(data))
    if len(line_ends) == 0:
        raise DataError("trials file is empty", path=path)

    def line_text(i: int) -> str:
        begin = 0 if i == 0 else int(line_ends[i - 1]) + 1
        return data[begin:int(line_ends[i])].decode("utf-8").strip()

    name = _detect_format(line_text(0).split())
    if name is None:
        raise DataError(f"unknown trials format {line_text(0)!r}: expected {_EXPECTED}", path=path, line=1)
    n_fields, label_col, label_text, enroll_col, test_col = _FORMATS[name]

    def field_count_error(i: int, note: str = "") -> DataError:
        if not line_text(i):
            return DataError("empty line", path=path, line=i + 1)
        return DataError(f"expected {n_fields} fields like line 1 ({name} trials), got "
                         f"{len(line_text(i).split())}{note}: {line_text(i)!r}", path=path, line=i + 1)

    bad = np.flatnonzero(_fields_per_line(data, line_ends) != n_fields)
    if bad.size:
        raise field_count_error(int(bad[0]))
    # Every line has n_fields fields, so field j of line k is token k * n_fields + j. str.split also
    # splits on non-ASCII whitespace (U+00A0, ...): then the count is off and the line is looked up.
    tokens = text.split()
    if len(tokens) != n_fields * len(line_ends):
        raise field_count_error(next(i for i, line in enumerate(text.split("\n")) if len(line.split()) != n_fields),
                                " (non-ASCII whitespace?)")
    labels = None
    if label_col is not None:
        text_labels = np.array(tokens[label_col::n_fields])
        labels = text_labels == label_text[0]
        valid = labels | (text_labels == label_text[1])
        if not valid.all():
            i = int(np.argmin(valid))
            raise DataError(f"unknown label {str(text_labels[i])!r} (expected {' or '.join(label_text)}): "
                            f"{line_text(i)!r}", path=path, line=i + 1)
    return Trials(enroll=tokens[enroll_col::n_fields], test=tokens[test_col::n_fields], labels=labels,
                  path=os.fspath(path))


def write_trials(path: str | os.PathLike, trials: Trials) -> None:
    """Write Kaldi trials (``<enroll> <test> target|nontarget``; two fields without labels), atomically."""
    n = len(trials.enroll)
    if len(trials.test) != n or (trials.labels is not None and len(trials.labels) != n):
        raise ValueError("enroll, test and labels must have the same length")
    if trials.labels is None:
        lines = [f"{e} {t}\n" for e, t in zip(trials.enroll, trials.test)]
    else:
        names = ("nontarget", "target")
        lines = [f"{e} {t} {names[bool(y)]}\n" for e, t, y in zip(trials.enroll, trials.test, trials.labels)]
    with atomic_file(path) as tmp:
        tmp.write_text("".join(lines))
