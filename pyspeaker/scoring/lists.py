"""Score files: reading, writing, and matching them to their trial list.

Formats: ``<enroll> <test> <score>`` (ours; Kaldi's ``utt1 utt2 score``) and WeSpeaker's
``<enroll> <test> <score> target|nontarget [more fields]`` (the label is kept). They are read as
trial lists are (:func:`pyspeaker.data.trials.read_trials`): a block at a time through pyarrow's
CSV parser (:mod:`pyspeaker.data.columns`), ids coded with the trials' vocabulary, scores as
float64. Blank lines are skipped, and line numbers still count them. A score that is not a number,
or not finite (NaN, inf), is a DataError naming the file and line.

Scores are written ``%.6f`` (printf's rounding, byte for byte) in trial order, a block of lines at
a time, each block formatted with numpy and joined into lines by pyarrow.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspeaker.data.columns import (Block, Layout, Vocabulary, concat, equal_to, first_line, line_text,
                                    read_blocks, write_rows)
from pyspeaker.data.trials import Trials
from pyspeaker.errors import DataError

_SCORE_FORM = "'<enroll> <test> <score>'"
_LABELS = ("target", "nontarget")


@dataclass
class ScoreCodes:
    """A score file as codes: ``enroll_codes[k]``, ``test_codes[k]`` (-1: an id the vocabulary does
    not hold), ``scores[k]``, ``labels[k]`` (WeSpeaker's 4th field, else None) and the file line of
    entry k."""

    path: str
    enroll_codes: np.ndarray
    test_codes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None
    num_fields: int
    numbers: np.ndarray | None = field(default=None, repr=False)  # None: entry k is on line k + 1

    def __len__(self) -> int:
        return len(self.scores)

    def line(self, index: int) -> int:
        return int(index + 1 if self.numbers is None else self.numbers[index])


def score_layout(path: str | os.PathLike, any_fields: bool = False) -> tuple[Layout, bool]:
    """``(layout, has_label)`` of a score file, from its first non-blank line. ``any_fields``: more
    fields than 3 need not start with a label (``pyspeaker calibrate apply`` keeps them as text)."""
    if not Path(path).is_file():
        raise DataError("scores file not found", path=path)
    first = first_line(path, skip_blank=True)
    if first is None:
        raise DataError("scores file is empty", path=path)
    fields = first[1].split()
    n = len(fields)
    has_label = n >= 4 and fields[3] in _LABELS
    if n < 3 or (n > 3 and not has_label and not any_fields):
        raise DataError(f"expected 3 fields {_SCORE_FORM} (or WeSpeaker's '<enroll> <test> <score> "
                        f"target|nontarget'), got {n}", path=path, line=first[0])
    names = ("enroll", "test", "score") + (("label",) if has_label else ()) + tuple(
        f"field{k}" for k in range(5 if has_label else 4, n + 1))
    if n == 3:
        form = _SCORE_FORM
    else:
        form = "like the first line" + (" ('<enroll> <test> <score> <label> ...')" if has_label else "")

    def wrong_count(got: int, text: str, note: str) -> str:
        return f"expected {n} fields {form}, got {got}{note}"

    keep = None if any_fields else names[:4 if has_label else 3]
    return Layout(names=names, wrong_count=wrong_count, numbers=("score",), keep=keep, blank_lines=True), has_label


def score_blocks(path: str | os.PathLike, layout: Layout, block_bytes: int | None = None
                 ) -> Iterator[tuple[Block, np.ndarray]]:
    """The blocks of a score file with their scores (float64, every one finite)."""
    for block in read_blocks(path, layout, block_bytes):
        values = block.column("score").to_numpy()
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            line = block.line(int(bad[0]))
            raise DataError(f"score '{line_text(path, line).split()[2]}' is not finite", path=path, line=line)
        yield block, values


def read_scores(path: str | os.PathLike, vocab: Vocabulary, grow: bool = False,
                block_bytes: int | None = None) -> ScoreCodes:
    """Read a score file a block at a time; ids are coded with ``vocab`` (extended when ``grow``, else
    -1 for unknown ids)."""
    layout, has_label = score_layout(path)
    enroll, test, scores, labels = [], [], [], []
    numbers: list[np.ndarray] = []  # kept from the first entry k that is not on line k + 1
    count = 0
    for block, values in score_blocks(path, layout, block_bytes):
        if has_label:
            is_target = equal_to(block.column("label"), "target")
            valid = is_target | equal_to(block.column("label"), "nontarget")
            if not valid.all():
                i = int(np.argmin(valid))
                raise DataError(f"unknown label {block.column('label')[i].as_py()!r} in field 4 (expected target "
                                f"or nontarget)", path=path, line=block.line(i))
            labels.append(is_target)
        codes = vocab.pair_codes(block.column("enroll"), block.column("test"), grow)
        enroll.append(codes[0])
        test.append(codes[1])
        scores.append(values)
        if numbers or block.numbers is not None or block.first != count + 1:
            if not numbers:  # the entries so far are on lines 1 .. count
                numbers.append(np.arange(1, count + 1))
            numbers.append(block.lines())
        count += len(block)
    return ScoreCodes(path=os.fspath(path), enroll_codes=concat(enroll, np.int32),
                      test_codes=concat(test, np.int32), scores=concat(scores, np.float64),
                      labels=concat(labels, bool) if has_label else None, num_fields=len(layout.names),
                      numbers=concat(numbers, np.int64) if numbers else None)


# --- matching scores to trials -----------------------------------------------------------------------

def match(trials: Trials, scores: ScoreCodes) -> np.ndarray | None:
    """For every trial, the index of its score entry; None when the files line up (entry i is trial i).

    By position when both files list the same pairs in the same order (one comparison of code
    arrays); otherwise by (enroll, test) pair, matched by sorting int64 pair keys. A trial without a
    score, a score without a trial, or two different scores for one pair is a DataError naming the
    file and line.
    """
    if len(trials) == len(scores) and np.array_equal(trials.enroll_codes, scores.enroll_codes) \
            and np.array_equal(trials.test_codes, scores.test_codes):
        return None
    size = max(1, len(trials.vocab))
    unknown = (scores.enroll_codes < 0) | (scores.test_codes < 0)
    score_keys = np.where(unknown, -1, scores.enroll_codes.astype(np.int64) * size + scores.test_codes)
    del unknown
    trial_keys = trials.pair_keys()
    order = np.argsort(score_keys, kind="stable")  # equal pairs stay in line order
    sorted_keys = score_keys[order]
    del score_keys
    sorted_scores = scores.scores[order]
    repeat = np.flatnonzero((sorted_keys[1:] == sorted_keys[:-1]) & (sorted_scores[1:] != sorted_scores[:-1])
                            & (sorted_keys[1:] >= 0))
    del sorted_scores
    if repeat.size:  # a pair may be listed twice (trial lists can repeat pairs), not with two scores
        j = min(repeat.tolist(), key=lambda j: order[j + 1])
        first = order[np.searchsorted(sorted_keys, sorted_keys[j])]
        k = int(order[j + 1])
        raise DataError(f"second, different score for trial '{_score_pair(scores, k)}' "
                        f"(first on line {scores.line(int(first))})", path=scores.path, line=scores.line(k))

    trial_order = np.argsort(trial_keys, kind="stable")
    trial_sorted = trial_keys[trial_order]
    pos = np.empty(len(trial_keys), dtype=np.int64)
    pos[trial_order] = np.minimum(np.searchsorted(sorted_keys, trial_sorted), len(sorted_keys) - 1)
    del trial_order
    missing = np.flatnonzero(sorted_keys[pos] != trial_keys)
    if missing.size:
        i = int(missing[0])
        more = f" ({missing.size} trials in all have none)" if missing.size > 1 else ""
        raise DataError(f"no score for trial '{trials.pair(i)}' in {scores.path}{more}",
                        path=trials.path, line=trials.line(i))
    at = np.minimum(np.searchsorted(trial_sorted, sorted_keys), len(trial_sorted) - 1)
    extra = order[trial_sorted[at] != sorted_keys]
    if extra.size:
        k = int(extra.min())
        raise DataError(f"score for '{_score_pair(scores, k)}' has no trial in {trials.path}",
                        path=scores.path, line=scores.line(k))
    return order[pos]


def _score_pair(scores: ScoreCodes, k: int) -> str:
    return " ".join(line_text(scores.path, scores.line(k)).split()[:2])


def check_labels(trials: Trials, scores: ScoreCodes, index: np.ndarray | None) -> None:
    """When a score file carries labels (WeSpeaker's 4th field) they must agree with the trials'."""
    if trials.labels is None or scores.labels is None:
        return
    score_labels = scores.labels if index is None else scores.labels[index]
    differ = np.flatnonzero(trials.labels != score_labels)
    if differ.size:
        i = int(differ[0])
        k = i if index is None else int(index[i])
        names = ("nontarget", "target")
        raise DataError(f"label '{names[int(scores.labels[k])]}' disagrees with {trials.path} line {trials.line(i)} "
                        f"('{names[int(trials.labels[i])]}')", path=scores.path, line=scores.line(k))


# --- writing -----------------------------------------------------------------------------------------

_DIGITS3 = np.array([list(b"%03d" % i) for i in range(1000)], dtype=np.uint8)  # "000" .. "999"


def score_strings(scores: np.ndarray, precision: int = 6, end: str = "") -> pa.StringArray:
    """``"%.{precision}f" % score + end`` for every score, byte for byte, vectorised (precision 1..9;
    ``end``: ASCII such as a newline).

    The digits come from ``rint(|x| 10^p)`` in float64, which is the correctly rounded decimal unless
    the scaled value is within 1e-6 of a rounding tie or large (>= 1e9); those few, and non-finite
    values, are formatted by Python. Each text is built right-aligned in a row of a fixed-width
    uint8 matrix (leading NULs, sign, integer digits, point, decimals; digits three at a time from a
    table); dropping the NULs leaves the texts back to back, the data of an Arrow string array.
    """
    if not 1 <= precision <= 9:
        raise ValueError(f"precision must be 1..9, got {precision}")
    x = np.asarray(scores, dtype=np.float64)
    tail = end.encode("ascii")
    m = len(x)
    int_digits = max(1, 9 - precision)  # |x| 10^p < 1e9
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.abs(x) * 10.0 ** precision
        fast = np.isfinite(scaled) & (scaled < 1e9) & (np.abs(scaled - np.floor(scaled) - 0.5) > 1e-6)
    value = np.rint(np.where(fast, scaled, 0.0)).astype(np.int64)
    ip, fp = np.divmod(value, 10 ** precision)
    n_int = np.ones(m, dtype=np.int64)
    for k in range(1, int_digits):
        n_int += ip >= 10 ** k
    width = 1 + int_digits + 1 + precision + len(tail)  # sign, integer digits, '.', decimals, end
    rows = np.zeros((m, width), dtype=np.uint8)
    groups = -(-int_digits // 3)
    digits = np.hstack([_DIGITS3[(ip // 1000 ** g) % 1000] for g in reversed(range(groups))])[:, -int_digits:]
    digits[np.arange(int_digits)[None, :] < (int_digits - n_int)[:, None]] = 0  # no leading zeros
    rows[:, 1:1 + int_digits] = digits
    signed = np.flatnonzero(np.signbit(x))
    rows[signed, int_digits - n_int[signed]] = ord("-")
    rows[:, 1 + int_digits] = ord(".")
    groups = -(-precision // 3)
    rows[:, 2 + int_digits:2 + int_digits + precision] = np.hstack(
        [_DIGITS3[(fp * 10 ** (3 * groups - precision) // 1000 ** g) % 1000] for g in reversed(range(groups))]
    )[:, :precision]
    rows[:, width - len(tail):] = np.frombuffer(tail, dtype=np.uint8)
    flat = rows.reshape(-1)
    data = flat[flat != 0]
    offsets = np.zeros(m + 1, dtype=np.int32)
    np.cumsum(width - (int_digits - n_int) - (~np.signbit(x)), out=offsets[1:])
    text = pa.StringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(data))
    slow = np.flatnonzero(~fast)
    if slow.size:
        text = pc.replace_with_mask(text, pa.array(~fast), pa.array(["%.*f%s" % (precision, v, end)
                                                                    for v in x[slow]]))
    return text


def write_scores(path: str | os.PathLike, trials: Trials, scores: np.ndarray, precision: int = 6) -> int:
    """``<enroll> <test> <score>`` lines in trial order, written atomically a block at a time; returns
    the file size in bytes."""
    from pyspeaker.fileio import atomic_file

    ids = trials.vocab.values

    def columns(rows: slice) -> list:
        return [ids.take(trials.enroll_codes[rows]), ids.take(trials.test_codes[rows]),
                score_strings(scores[rows], precision, end="\n")]

    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            write_rows(f, len(scores), columns, newline=False)
        size = tmp.stat().st_size
    return size
