"""Streaming readers for large trial lists and score files: 10 million lines in bounded memory.

A file is read in blocks of whole lines (``BLOCK_BYTES``). A block in the usual layout (fields
separated by one space, lines by one newline) is parsed with numpy only: the separator positions
give every field's start and end, the id fields are copied into a zero-padded byte matrix through a
sliding-window view, and each id becomes an int32 code through one :class:`Vocabulary` (a sorted
table of 64-bit hashes of the padded bytes, every match verified byte for byte) that the trials
and the scores share. Any other layout (tabs, repeated spaces, blank lines) is checked field by
field as :func:`pyspeaker.data.trials.read_trials` does and rewritten into the usual layout first.
What is kept per line is a few numbers (codes, label, score), never a Python string: 10 million
trials need about 100 MB instead of several GB of string lists.

Trials: Kaldi ``<enroll> <test> target|nontarget``, VoxCeleb ``<1|0> <enroll> <test>`` or unlabelled
``<enroll> <test>``, with the same checks and messages as :func:`pyspeaker.data.trials.read_trials`.
Scores: ``<enroll> <test> <score>`` (ours; Kaldi's ``utt1 utt2 score``) or WeSpeaker's
``<enroll> <test> <score> target|nontarget [more fields]`` (the label is kept). Blank lines in a
score file are skipped, and line numbers still count them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pyspeaker.data.trials import _EXPECTED, _FORMATS, _detect_format, _fields_per_line
from pyspeaker.errors import DataError

BLOCK_BYTES = 16 << 20
_SCORE_FORM = "'<enroll> <test> <score>'"
_LABELS = (b"target", b"nontarget")
_OTHER_WHITESPACE = (b"\t", b"\r", b"\x0b", b"\x0c")


def iter_blocks(path: str | os.PathLike, block_bytes: int | None = None) -> Iterator[tuple[bytes, int]]:
    """``(block, number of its first line)`` for blocks of whole lines (the last may lack its newline)."""
    size = BLOCK_BYTES if block_bytes is None else block_bytes
    line = 1
    rest = b""
    with open(path, "rb") as f:
        while True:
            data = f.read(size)
            if not data:
                if rest:
                    yield rest, line
                return
            if rest:
                data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            block, rest = (data, b"") if cut == len(data) else (data[:cut], data[cut:])
            yield block, line
            line += block.count(b"\n")


def line_text(path: str | os.PathLike, number: int) -> str:
    """Line ``number`` (1-based) of a file, stripped; only used to build error messages."""
    with open(path, "rb") as f:
        for k, raw in enumerate(f, 1):
            if k == number:
                return raw.decode("utf-8", errors="replace").strip()
    return ""


def _line_ends(block: bytes) -> np.ndarray:
    ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
    if block and block[-1:] != b"\n":
        ends = np.append(ends, len(block))
    return ends


def _check_utf8(block: bytes, path, first_line: int) -> None:
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", path=path,
                        line=first_line + block[:e.start].count(b"\n")) from None


# --- parsing a block -------------------------------------------------------------------------------

@dataclass
class _Block:
    """The fields of a block in the usual layout: field k of line i is ``raw[starts[i, k]:ends[i, k]]``
    (``raw`` zero-padded at the end, so that fixed-width windows never run past it)."""

    raw: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    numbers: np.ndarray  # file line number of each row

    def __len__(self) -> int:
        return len(self.starts)

    def column(self, k: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(padded, lengths)``: field k of every line as rows of a zero-padded uint8 matrix whose
        width is a multiple of 8 (or ``width``)."""
        lens = self.ends[:, k] - self.starts[:, k]
        if width is None:
            width = max(8, -(-int(lens.max(initial=1)) // 8) * 8)
        if width > len(self.raw) - int(self.ends.max(initial=0)):  # needs more zero padding
            self.raw = np.concatenate([self.raw, np.zeros(width, dtype=np.uint8)])
        rows = sliding_window_view(self.raw, width)[self.starts[:, k]]  # a copy: one memcpy per row
        rows[np.arange(width)[None, :] >= lens[:, None]] = 0
        return rows, lens

    def text(self, k: int, i: int) -> str:
        return self.raw[self.starts[i, k]:self.ends[i, k]].tobytes().decode("utf-8", errors="replace")

    def line(self, i: int) -> str:
        return self.raw[self.starts[i, 0]:self.ends[i, -1]].tobytes().decode("utf-8", errors="replace")


def _fast_layout(block: bytes, n_fields: int, first: int) -> _Block | None:
    """The block's fields when every line is ``n_fields`` fields joined by single spaces, else None."""
    if any(c in block for c in _OTHER_WHITESPACE):
        return None
    if not block.endswith(b"\n"):
        block += b"\n"
    raw = np.frombuffer(block, np.uint8)
    newline = raw == 10
    sep = np.flatnonzero(newline | (raw == 32))
    n_lines = int(np.count_nonzero(newline))
    if len(sep) != n_fields * n_lines or sep[0] == 0 or np.any(np.diff(sep) == 1) \
            or not np.all(raw[sep[n_fields - 1::n_fields]] == 10):
        return None
    starts = np.empty_like(sep)
    starts[0] = 0
    starts[1:] = sep[:-1] + 1
    padded = np.concatenate([raw, np.zeros(64, dtype=np.uint8)])
    return _Block(raw=padded, starts=starts.reshape(n_lines, n_fields), ends=sep.reshape(n_lines, n_fields),
                  numbers=first + np.arange(n_lines))


def _rewritten(tokens: list[bytes], n_fields: int, numbers: np.ndarray) -> _Block:
    """A block in the usual layout holding ``tokens`` (``n_fields`` per line): the slow path."""
    lines = [b" ".join(tokens[i:i + n_fields]) for i in range(0, len(tokens), n_fields)]
    block = _fast_layout(b"\n".join(lines) + b"\n", n_fields, 0)
    assert block is not None  # tokens hold no whitespace and are never empty
    block.numbers = numbers
    return block


def _label_values(block: _Block, k: int, names: tuple[bytes, bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``(is_first_name, valid)`` of field k against the two label spellings."""
    width = max(8, -(-max(len(names[0]), len(names[1])) // 8) * 8)
    rows, lens = block.column(k, width)
    out = []
    for name in names:
        pattern = np.zeros(width, dtype=np.uint8)
        pattern[:len(name)] = np.frombuffer(name, np.uint8)
        out.append((lens == len(name)) & np.all(rows == pattern, axis=1))
    return out[0], out[0] | out[1]


# --- vocabulary ------------------------------------------------------------------------------------

_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _hash_rows(words: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of a uint64 matrix (splitmix64-style mixing, column by column).

    All-zero words (the padding: ids hold no NUL bytes) leave the hash unchanged, so an id hashes
    the same whatever the width it was padded to."""
    h = np.full(len(words), _M1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            w = words[:, j]
            mixed = (h ^ w) * _M2
            mixed ^= mixed >> np.uint64(31)
            mixed *= _M3
            mixed ^= mixed >> np.uint64(29)
            h = np.where(w != 0, mixed, h)
    return h


def _pad_tokens(tokens: list[bytes]) -> np.ndarray:
    """Tokens as rows of a zero-padded uint8 matrix (width a multiple of 8)."""
    arr = np.array(tokens, dtype=bytes) if tokens else np.zeros(0, dtype="S8")
    width = max(8, -(-arr.itemsize // 8) * 8)
    out = np.zeros((len(arr), width), dtype=np.uint8)
    out[:, :arr.itemsize] = arr.view(np.uint8).reshape(len(arr), arr.itemsize)
    return out


class Vocabulary:
    """Ids as int32 codes, in order of first appearance; shared by a trial list and its scores.

    Lookups are vectorised: an id is its zero-padded bytes, hashed to 64 bits; the known hashes are
    kept sorted with their codes, and every hit is verified against the stored bytes of that code,
    so a hash collision can never merge two ids (it is reported instead; odds ~1e-8 for a million
    distinct ids).
    """

    def __init__(self) -> None:
        self._hashes = np.empty(0, dtype=np.uint64)  # sorted
        self._codes = np.empty(0, dtype=np.int64)  # code of each sorted hash
        self._words = np.zeros((0, 1), dtype=np.uint64)  # padded bytes of each code, as uint64 words
        self._bytes: list[bytes] = []  # each code's id
        self._ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self._bytes)

    def encode(self, padded: np.ndarray, grow: bool) -> np.ndarray:
        """Codes of the ids in the rows of ``padded`` (uint8, zero-padded, width a multiple of 8);
        new ids get new codes when ``grow``, else -1."""
        m = len(padded)
        if m == 0:
            return np.empty(0, dtype=np.int32)
        words = np.ascontiguousarray(padded).view(np.uint64)
        # runs of one id on consecutive lines (VoxCeleb lists repeat the enroll id): code each run once
        starts = np.flatnonzero(np.concatenate([[True], np.any(words[1:] != words[:-1], axis=1)]))
        runs = len(starts) < m
        if runs:
            words = words[starts]
        hashes = _hash_rows(words)
        codes = np.full(len(words), -1, dtype=np.int64)
        if len(self._hashes):  # known ids: one binary search each, then verified byte for byte
            pos = np.minimum(np.searchsorted(self._hashes, hashes), len(self._hashes) - 1)
            found = np.flatnonzero(self._hashes[pos] == hashes)
            known = self._codes[pos[found]]
            a, b = self._aligned(words[found], self._words[known])
            same = np.all(a == b, axis=1)
            if not same.all():
                j = int(np.flatnonzero(~same)[0])
                self._collision(a[j].view(np.uint8), b[j].view(np.uint8))
            codes[found] = known
        if grow:
            missing = np.flatnonzero(codes < 0)
            if missing.size:
                codes[missing] = self._add(words[missing], hashes[missing])
        if runs:
            codes = np.repeat(codes, np.diff(np.append(starts, m)))
        return codes.astype(np.int32)

    def _add(self, words: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """Codes for ids not in the vocabulary yet (in order of first appearance)."""
        unique, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        rep = words[first]
        if not np.array_equal(rep[inverse], words):
            i = int(np.flatnonzero(~np.all(rep[inverse] == words, axis=1))[0])
            self._collision(words[i].view(np.uint8), rep[inverse[i]].view(np.uint8))
        order = np.argsort(first, kind="stable")  # codes in order of first appearance
        new_codes = np.empty(len(unique), dtype=np.int64)
        new_codes[order] = len(self._bytes) + np.arange(len(unique))
        width = words.shape[1] * 8
        self._bytes.extend(rep[order].view(f"S{width}").reshape(-1).tolist())
        old, fresh = self._aligned(self._words, rep)
        fresh_by_code = np.empty_like(fresh)
        fresh_by_code[new_codes - len(old)] = fresh
        self._words = np.concatenate([old, fresh_by_code])
        at = np.searchsorted(self._hashes, unique)  # unique is sorted: the table stays sorted
        self._hashes = np.insert(self._hashes, at, unique)
        self._codes = np.insert(self._codes, at, new_codes)
        self._ids = None
        return new_codes[inverse]

    @staticmethod
    def _aligned(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two word matrices padded with zero columns to the same width."""
        width = max(a.shape[1], b.shape[1])
        pad = lambda m: m if m.shape[1] == width else np.hstack(  # noqa: E731
            [m, np.zeros((len(m), width - m.shape[1]), dtype=np.uint64)])
        return pad(a), pad(b)

    @staticmethod
    def _collision(a: np.ndarray, b: np.ndarray) -> None:
        text = [bytes(x).rstrip(b"\0").decode("utf-8", "replace") for x in (a, b)]
        raise DataError(f"ids '{text[0]}' and '{text[1]}' have the same 64-bit hash; rename one of them "
                        f"(and please report this)")

    def add(self, tokens: list[bytes]) -> np.ndarray:
        """Codes of ``tokens``, giving new ids the next codes (in order of appearance)."""
        return self.encode(_pad_tokens(tokens), grow=True)

    def lookup(self, tokens: list[bytes]) -> np.ndarray:
        """Codes of ``tokens``; -1 for an id the vocabulary does not hold."""
        return self.encode(_pad_tokens(tokens), grow=False)

    def ids(self) -> list[str]:
        """The ids, indexed by code."""
        if self._ids is None or len(self._ids) != len(self._bytes):
            self._ids = [k.decode("utf-8") for k in self._bytes]
        return self._ids

    def id_array(self) -> np.ndarray:
        """The ids as a numpy object array (fancy-indexable by code arrays)."""
        return np.array(self.ids(), dtype=object)


def _id_pairs(block: _Block, vocab: Vocabulary, e_col: int, t_col: int, grow: bool) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the enroll and the test fields (each column coded on its own, so that the runs of
    one enroll id on consecutive lines are looked up once)."""
    return vocab.encode(block.column(e_col)[0], grow), vocab.encode(block.column(t_col)[0], grow)


# --- trials ----------------------------------------------------------------------------------------

@dataclass
class TrialCodes:
    """A trial list as codes: ``enroll[i]``, ``test[i]`` (into ``vocab``) and ``labels[i]`` of line i+1."""

    path: str
    format: str
    enroll: np.ndarray
    test: np.ndarray
    labels: np.ndarray | None
    vocab: Vocabulary
    num_lines: int = 0

    def __len__(self) -> int:
        return len(self.enroll)

    def line(self, index: int) -> int:
        return index + 1  # trial lists have no blank lines (read_trial_codes rejects them)

    def pair(self, index: int) -> str:
        ids = self.vocab.ids()
        return f"{ids[self.enroll[index]]} {ids[self.test[index]]}"

    def pair_keys(self) -> np.ndarray:
        """One int64 per (enroll, test) pair, equal for equal pairs."""
        return self.enroll.astype(np.int64) * max(1, len(self.vocab)) + self.test


def _trial_block(block: bytes, first: int, path, fmt: str) -> _Block:
    """The block's fields, checked as read_trials checks them (fast when in the usual layout)."""
    n_fields = _FORMATS[fmt][0]
    parsed = _fast_layout(block, n_fields, first)
    if parsed is not None:
        return parsed
    ends = _line_ends(block)
    counts = _fields_per_line(block, ends)
    bad = np.flatnonzero(counts != n_fields)
    if bad.size:
        i = int(bad[0])
        begin = 0 if i == 0 else int(ends[i - 1]) + 1
        text = block[begin:int(ends[i])].decode("utf-8").strip()
        if not text:
            raise DataError("empty line", path=path, line=first + i)
        raise DataError(f"expected {n_fields} fields like line 1 ({fmt} trials), got {len(text.split())}: "
                        f"{text!r}", path=path, line=first + i)
    return _rewritten(block.split(), n_fields, first + np.arange(len(ends)))


def read_trial_codes(path: str | os.PathLike, vocab: Vocabulary | None = None,
                     block_bytes: int | None = None) -> TrialCodes:
    """Read a Kaldi / VoxCeleb / unlabelled trial list in blocks (see the module doc)."""
    vocab = Vocabulary() if vocab is None else vocab
    if not Path(path).is_file():
        raise DataError("trials file not found", path=path)
    fmt = None
    enroll, test, labels = [], [], []
    num_lines = 0
    for chunk, first in iter_blocks(path, block_bytes):
        _check_utf8(chunk, path, first)
        if fmt is None:
            first_text = chunk[:int(_line_ends(chunk)[0])].decode("utf-8").strip()
            fmt = _detect_format(first_text.split())
            if fmt is None:
                raise DataError(f"unknown trials format {first_text!r}: expected {_EXPECTED}", path=path, line=1)
            n_fields, label_col, label_text, enroll_col, test_col = _FORMATS[fmt]
        block = _trial_block(chunk, first, path, fmt)
        if label_col is not None:
            is_target, valid = _label_values(block, label_col, (label_text[0].encode(), label_text[1].encode()))
            if not valid.all():
                i = int(np.argmin(valid))
                raise DataError(f"unknown label {block.text(label_col, i)!r} (expected {' or '.join(label_text)}): "
                                f"{block.line(i)!r}", path=path, line=int(block.numbers[i]))
            labels.append(is_target)
        e, t = _id_pairs(block, vocab, enroll_col, test_col, grow=True)
        enroll.append(e)
        test.append(t)
        num_lines += len(block)
        del block
    if fmt is None:
        raise DataError("trials file is empty", path=path)
    return TrialCodes(path=os.fspath(path), format=fmt, enroll=_cat(enroll, np.int32), test=_cat(test, np.int32),
                      labels=_cat(labels, bool) if labels else None, vocab=vocab, num_lines=num_lines)


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype=dtype)


# --- scores ----------------------------------------------------------------------------------------

@dataclass
class ScoreCodes:
    """A score file as codes: ``enroll[k]``, ``test[k]`` (-1: an id not in the vocabulary), ``scores[k]``,
    ``labels[k]`` (WeSpeaker's 4th field, else None) and the file line of entry k."""

    path: str
    enroll: np.ndarray
    test: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None
    num_fields: int
    numbers: np.ndarray | None = field(default=None, repr=False)  # None: entry k is on line k + 1

    def __len__(self) -> int:
        return len(self.scores)

    def line(self, index: int) -> int:
        return int(index + 1 if self.numbers is None else self.numbers[index])


def _score_format(first_fields: list[bytes], path, line: int) -> tuple[int, bool]:
    """``(fields per line, has label)`` from the first non-blank line."""
    n = len(first_fields)
    if n == 3:
        return 3, False
    if n >= 4 and first_fields[3] in _LABELS:
        return n, True
    raise DataError(f"expected 3 fields {_SCORE_FORM} (or WeSpeaker's '<enroll> <test> <score> target|nontarget'),"
                    f" got {n}", path=path, line=line)


def _score_block(chunk: bytes, first: int, path, n_fields: int) -> _Block | None:
    """The block's non-blank lines (None if it has none), checked for their field count."""
    parsed = _fast_layout(chunk, n_fields, first)
    if parsed is not None:
        return parsed
    ends = _line_ends(chunk)
    counts = _fields_per_line(chunk, ends)
    present = np.flatnonzero(counts > 0)
    if present.size == 0:
        return None
    bad = present[counts[present] != n_fields]
    if bad.size:
        i = int(bad[0])
        form = _SCORE_FORM if n_fields == 3 else "like the first line ('<enroll> <test> <score> <label> ...')"
        raise DataError(f"expected {n_fields} fields {form}, got {int(counts[i])}", path=path, line=first + i)
    return _rewritten(chunk.split(), n_fields, first + present)


def _parse_floats(tokens: list[bytes], path, numbers: np.ndarray) -> np.ndarray:
    try:
        values = np.array(tokens).astype(np.float64)
    except ValueError:
        for k, tok in enumerate(tokens):
            try:
                float(tok)
            except ValueError:
                raise DataError(f"score '{tok.decode('utf-8', 'replace')}' is not a number", path=path,
                                line=int(numbers[k])) from None
        raise
    return _check_finite(values, tokens.__getitem__, path, numbers)


def _check_finite(values: np.ndarray, text, path, numbers: np.ndarray) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        k = int(bad[0])
        token = text(k)
        token = token.decode("utf-8", "replace") if isinstance(token, bytes) else token
        raise DataError(f"score '{token}' is not finite", path=path, line=int(numbers[k]))
    return values


def _block_floats(block: _Block, k: int, path) -> np.ndarray:
    rows, _ = block.column(k)
    try:
        values = rows.view(f"S{rows.shape[1]}").reshape(-1).astype(np.float64)
    except ValueError:  # find the offending field, with Python's own parser
        for i in range(len(block)):
            try:
                float(block.text(k, i))
            except ValueError:
                raise DataError(f"score '{block.text(k, i)}' is not a number", path=path,
                                line=int(block.numbers[i])) from None
        raise
    return _check_finite(values, lambda i: block.text(k, i), path, block.numbers)


def read_score_codes(path: str | os.PathLike, vocab: Vocabulary, grow: bool = False,
                     block_bytes: int | None = None) -> ScoreCodes:
    """Read a score file in blocks; ids are coded with ``vocab`` (extended when ``grow``, else -1 for
    unknown ids)."""
    if not Path(path).is_file():
        raise DataError("scores file not found", path=path)
    n_fields, has_label = None, False
    enroll, test, scores, labels, numbers = [], [], [], [], []
    expected_line = 1  # while it matches, entry k is on line k + 1 and no numbers are kept
    for chunk, first in iter_blocks(path, block_bytes):
        _check_utf8(chunk, path, first)
        if n_fields is None:
            rest = chunk.lstrip()  # from the first non-blank line
            if not rest:
                continue
            skipped = chunk[:len(chunk) - len(rest)].count(b"\n")
            n_fields, has_label = _score_format(rest.split(b"\n", 1)[0].split(), path, first + skipped)
        block = _score_block(chunk, first, path, n_fields)
        if block is None:
            continue
        scores.append(_block_floats(block, 2, path))
        if has_label:
            is_target, valid = _label_values(block, 3, _LABELS)
            if not valid.all():
                i = int(np.argmin(valid))
                raise DataError(f"unknown label {block.text(3, i)!r} in field 4 (expected target or nontarget)",
                                path=path, line=int(block.numbers[i]))
            labels.append(is_target)
        e, t = _id_pairs(block, vocab, 0, 1, grow)
        enroll.append(e)
        test.append(t)
        numbers.append(block.numbers)
        if expected_line is not None:
            expected_line = expected_line + len(block) if block.numbers[0] == expected_line and \
                block.numbers[-1] == expected_line + len(block) - 1 else None
        del block
    if n_fields is None:
        raise DataError("scores file is empty", path=path)
    return ScoreCodes(path=os.fspath(path), enroll=_cat(enroll, np.int32), test=_cat(test, np.int32),
                      scores=_cat(scores, np.float64), labels=_cat(labels, bool) if has_label else None,
                      num_fields=n_fields, numbers=None if expected_line is not None else _cat(numbers, np.int64))


def match(trials: TrialCodes, scores: ScoreCodes) -> np.ndarray | None:
    """For every trial, the index of its score entry; None when the files line up (entry i is trial i).

    By position when both files list the same pairs in the same order (one comparison of code
    arrays); otherwise by (enroll, test) pair, matched by sorting int64 pair keys. A trial without a
    score, a score without a trial, or two different scores for one pair is a DataError naming the
    file and line.
    """
    if len(trials) == len(scores) and np.array_equal(trials.enroll, scores.enroll) \
            and np.array_equal(trials.test, scores.test):
        return None
    size = max(1, len(trials.vocab))
    unknown = (scores.enroll < 0) | (scores.test < 0)
    score_keys = np.where(unknown, -1, scores.enroll.astype(np.int64) * size + scores.test)
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
    fields = line_text(scores.path, scores.line(k)).split()
    return " ".join(fields[:2])


def check_labels(trials: TrialCodes, scores: ScoreCodes, index: np.ndarray | None) -> None:
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
