"""Trial lists: Kaldi ``<enroll> <test> target|nontarget`` and VoxCeleb ``<1|0> <path1> <path2>``.

The format is detected per file from its first line; a list of ``<enroll> <test>`` pairs without
labels is read too (labels None), for scoring only. :func:`read_trials` is the one reader, used by
every command: it streams the file in blocks through pyarrow's CSV parser
(:mod:`pyspeaker.data.columns`) and keeps each trial as two int32 codes into a
:class:`~pyspeaker.data.columns.Vocabulary` and a label, so ten million trials take about 100 MB.
Every bad line is a DataError naming the file and line: a blank line, a line with another number
of fields than line 1, an unknown label, bytes that are not UTF-8.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from pyspeaker.data.columns import (Layout, Vocabulary, as_strings, concat, equal_to, first_line, line_text,
                                    read_blocks, write_rows)
from pyspeaker.errors import DataError
from pyspeaker.fileio import atomic_file

# format name -> (field names, label field, (target, nontarget) label text)
_FORMATS = {
    "kaldi": (("enroll", "test", "label"), "label", ("target", "nontarget")),
    "voxceleb": (("label", "enroll", "test"), "label", ("1", "0")),
    "unlabeled": (("enroll", "test"), None, None),
}
_EXPECTED = "'<enroll> <test> target|nontarget', '<1|0> <path1> <path2>' or '<enroll> <test>'"


class Trials:
    """A trial list: trial i is ``enroll[i]`` against ``test[i]``, a target trial when ``labels[i]``
    (labels None for an unlabelled list).

    Kept as codes: ``enroll_codes`` / ``test_codes`` (int32) index ``vocab``; ``enroll`` and ``test``
    give the ids as lists of str (built on each access). ``Trials(enroll, test, labels)`` makes a
    list in memory (for :func:`write_trials`); :func:`read_trials` reads one.
    """

    def __init__(self, enroll: Sequence[str], test: Sequence[str], labels: np.ndarray | None = None,
                 path: str | os.PathLike | None = None):
        if len(test) != len(enroll) or (labels is not None and len(labels) != len(enroll)):
            raise ValueError("enroll, test and labels must have the same length")
        self.vocab = Vocabulary()
        codes = self.vocab.codes(pa.chunked_array([as_strings(enroll), as_strings(test)], type=pa.string()), grow=True)
        self.enroll_codes, self.test_codes = codes[:len(enroll)], codes[len(enroll):]
        self.labels = None if labels is None else np.asarray(labels, dtype=bool)
        self.path = None if path is None else os.fspath(path)
        self.format: str | None = None
        self.num_lines = len(enroll)

    @classmethod
    def from_codes(cls, enroll_codes: np.ndarray, test_codes: np.ndarray, vocab: Vocabulary,
                   labels: np.ndarray | None, path: str | os.PathLike | None, fmt: str | None) -> "Trials":
        self = cls.__new__(cls)
        self.enroll_codes, self.test_codes, self.vocab, self.labels = enroll_codes, test_codes, vocab, labels
        self.path = None if path is None else os.fspath(path)
        self.format = fmt
        self.num_lines = len(enroll_codes)
        return self

    def __len__(self) -> int:
        return len(self.enroll_codes)

    @property
    def enroll(self) -> list[str]:
        return self.vocab.id_objects()[self.enroll_codes].tolist()

    @property
    def test(self) -> list[str]:
        return self.vocab.id_objects()[self.test_codes].tolist()

    def line(self, index: int) -> int:
        return index + 1  # a trial list has no blank lines (read_trials refuses them)

    def pair(self, index: int) -> str:
        ids = self.vocab.id_objects()
        return f"{ids[self.enroll_codes[index]]} {ids[self.test_codes[index]]}"

    def pair_keys(self) -> np.ndarray:
        """One int64 per (enroll, test) pair, equal for equal pairs."""
        return self.enroll_codes.astype(np.int64) * max(1, len(self.vocab)) + self.test_codes


def _layout(fmt: str) -> Layout:
    names = _FORMATS[fmt][0]

    def wrong_count(got: int, text: str, note: str) -> str:
        if got == 0:
            return "empty line"
        return f"expected {len(names)} fields like line 1 ({fmt} trials), got {got}{note}: {text!r}"

    return Layout(names=names, wrong_count=wrong_count)


def _detect_format(path) -> str:
    first = first_line(path, skip_blank=False)
    if first is None:
        raise DataError("trials file is empty", path=path)
    fields = first[1].split()
    if len(fields) == 3 and fields[2] in _FORMATS["kaldi"][2]:
        return "kaldi"
    if len(fields) == 3 and fields[0] in _FORMATS["voxceleb"][2]:
        return "voxceleb"
    if len(fields) == 2:
        return "unlabeled"
    raise DataError(f"unknown trials format {first[1].strip()!r}: expected {_EXPECTED}", path=path, line=1)


def read_trials(path: str | os.PathLike, vocab: Vocabulary | None = None,
                block_bytes: int | None = None) -> Trials:
    """Read a Kaldi / VoxCeleb / unlabelled trial list, a block at a time; ids are coded with
    ``vocab`` (a new one by default). DataError (path, line, what) for any bad line."""
    if not Path(path).is_file():
        raise DataError("trials file not found", path=path)
    fmt = _detect_format(path)
    _, label_field, label_text = _FORMATS[fmt]
    vocab = Vocabulary() if vocab is None else vocab
    enroll, test, labels = [], [], []
    for block in read_blocks(path, _layout(fmt), block_bytes):
        if label_field is not None:
            column = block.column(label_field)
            is_target = equal_to(column, label_text[0])
            valid = is_target | equal_to(column, label_text[1])
            if not valid.all():
                i = int(np.argmin(valid))
                raise DataError(f"unknown label {column[i].as_py()!r} (expected {' or '.join(label_text)}): "
                                f"{line_text(path, block.line(i))!r}", path=path, line=block.line(i))
            labels.append(is_target)
        codes = vocab.pair_codes(block.column("enroll"), block.column("test"), grow=True)
        enroll.append(codes[0])
        test.append(codes[1])
    return Trials.from_codes(concat(enroll, np.int32), concat(test, np.int32), vocab,
                             concat(labels, bool) if label_field is not None else None, path, fmt)


def write_trials(path: str | os.PathLike, trials: Trials) -> None:
    """Write Kaldi trials (``<enroll> <test> target|nontarget``; two fields without labels), atomically."""
    ids = trials.vocab.values
    names = pa.array(["nontarget", "target"])

    def columns(rows: slice) -> list:
        out = [ids.take(trials.enroll_codes[rows]), ids.take(trials.test_codes[rows])]
        return out if trials.labels is None else out + [names.take(trials.labels[rows].astype(np.int8))]

    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            write_rows(f, len(trials), columns)
