"""Whitespace-separated text columns (trial lists, score files), read in blocks by pyarrow's CSV parser.

A file is read in blocks of whole lines (``BLOCK_BYTES``, so that lists larger than memory stream).
A block in the usual layout -- ASCII, fields joined by one space, lines by one newline -- goes
straight to pyarrow's multithreaded CSV reader (space-delimited, no quoting, no null values), which
returns each field as an Arrow column: ids as strings, scores as float64. Any other block (tabs,
repeated or trailing spaces, CRLF, blank lines, non-ASCII whitespace, a line with the wrong number
of fields, bytes that are not UTF-8, a number that does not parse) is checked line by line, so that
the first bad line is reported as ``file:line: what``, and rewritten in the usual layout for the
same parser. A field is what ``str.split`` gives; a line where that differs from splitting on
ASCII whitespace (U+00A0 and the like) is refused as ambiguous. A UTF-8 byte-order mark opening
the file is skipped.

Ids become int32 codes through a :class:`Vocabulary` (pyarrow's hash lookups), so that ten million
lines are kept as a few arrays of numbers, never as Python strings.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pyspeaker.errors import DataError

BLOCK_BYTES = 64 << 20
# whitespace to str.split (so to the line checks) that a single-space layout cannot hold
_ODD_BYTES = (b"\t", b"\r", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")
# the UTF-8 form of the non-ASCII characters that str.split splits on
_ODD_UTF8 = re.compile(b"\xc2[\x85\xa0]|\xe1\x9a\x80|\xe2\x80[\x80-\x8a\xa8\xa9\xaf]|\xe2\x81\x9f|\xe3\x80\x80")
_BOM = "\ufeff".encode()
_PARSE = pacsv.ParseOptions(delimiter=" ", quote_char=False, double_quote=False, escape_char=False,
                            newlines_in_values=False, ignore_empty_lines=False)


@dataclass(frozen=True)
class Layout:
    """The fields of every line of a format: their names, which are numbers (float64; the others are
    strings), which to keep (None: all), whether blank lines are skipped (else an error), and the
    message for a line of ``got`` fields: ``wrong_count(got, stripped line, note)``."""

    names: tuple[str, ...]
    wrong_count: Callable[[int, str, str], str]
    numbers: tuple[str, ...] = ()
    keep: tuple[str, ...] | None = None
    blank_lines: bool = False


@dataclass
class Block:
    """The parsed lines of a block: ``table`` (one column per kept field) and the file line of each
    row (``numbers``; None when row i is line ``first + i``)."""

    table: pa.Table
    first: int
    numbers: np.ndarray | None = None

    def __len__(self) -> int:
        return self.table.num_rows

    def line(self, i: int) -> int:
        return self.first + i if self.numbers is None else int(self.numbers[i])

    def lines(self) -> np.ndarray:
        return self.first + np.arange(len(self)) if self.numbers is None else self.numbers

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)


def iter_blocks(path: str | os.PathLike, block_bytes: int | None = None) -> Iterator[tuple[bytearray, int]]:
    """``(block, byte offset)`` for blocks of whole lines (the last may lack its newline): about
    ``block_bytes`` read into a fresh buffer, then the rest of the last line."""
    size = BLOCK_BYTES if block_bytes is None else block_bytes
    offset = 0
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size  # 0 for a pipe
        while True:
            block = bytearray(min(size, max(file_size - offset, 1 << 16)))
            n = f.readinto(block)
            if not n:
                return
            del block[n:]
            if not block.endswith(b"\n"):
                block += f.readline()
            yield block, offset
            offset += len(block)


def first_line(path: str | os.PathLike, skip_blank: bool) -> tuple[int, str] | None:
    """``(number, text)`` of the first line (the first non-blank one if ``skip_blank``); None for a
    file without one."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"not UTF-8 text (byte {f.tell() - len(raw) + e.start})", path=path,
                                line=number) from None
            if number == 1:
                text = text.removeprefix("\ufeff")
            if text.strip() or not skip_blank:
                return number, text
    return None


def line_text(path: str | os.PathLike, number: int) -> str:
    """Line ``number`` (1-based) of a file, stripped; only used to build error messages."""
    with open(path, "rb") as f:
        for k, raw in enumerate(f, 1):
            if k == number:
                return raw.decode("utf-8", errors="replace").strip()
    return ""


def read_blocks(path: str | os.PathLike, layout: Layout, block_bytes: int | None = None) -> Iterator[Block]:
    """The parsed blocks of a file (blocks holding nothing but blank lines are left out)."""
    first = 1
    for data, offset in iter_blocks(path, block_bytes):
        block, lines = parse_block(data, first, offset, path, layout)
        if block is not None:
            yield block
        first += lines


def parse_block(data: bytes | bytearray, first: int, offset: int, path, layout: Layout) -> tuple[Block | None, int]:
    """``(lines parsed, number of lines)`` of a block whose first line is line ``first``: pyarrow on
    the bytes as they are when they are in the usual layout, else after the line-by-line check and
    rewrite (no Block when every line is blank)."""
    if _usual(data) and not (offset and data.startswith(_BOM)):  # pyarrow would drop a BOM opening a block
        try:
            table = _arrow_table(data, layout)
        except pa.ArrowInvalid:
            table = None
        if table is not None and not _has_empty_field(table, layout):
            return Block(table, first), table.num_rows  # a row per line (a blank line is a row of empty fields)
    text, numbers, lines = _rewritten(data, first, offset, path, layout)
    if not numbers.size:
        return None, lines
    try:
        table = _arrow_table(text, layout)
    except pa.ArrowInvalid as e:
        raise _bad_number(text, numbers, path, layout, e) from None
    return Block(table, first, numbers), lines


def _usual(data: bytes | bytearray) -> bool:
    """No whitespace but single spaces and newlines could be in it (the rest pyarrow and
    :func:`_has_empty_field` tell)."""
    return not any(c in data for c in _ODD_BYTES) and (data.isascii() or not _ODD_UTF8.search(data))


# Single-threaded parsing: Arrow's CPU thread pool, once started, can abort the process at exit
# ("terminate called without an active exception", apache/arrow#34314) when the interpreter
# shuts down; on the 2-4 cores this runs on, the threaded parser gains little.
_USE_THREADS = False


def _arrow_table(data: bytes | bytearray, layout: Layout, numbers_as_text: bool = False) -> pa.Table:
    types = {name: pa.string() for name in layout.names}
    if not numbers_as_text:
        types.update({name: pa.float64() for name in layout.numbers})
    return pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(column_names=list(layout.names), use_threads=_USE_THREADS),
        parse_options=_PARSE,
        convert_options=pacsv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False,
                                             quoted_strings_can_be_null=False,
                                             include_columns=list(layout.keep or layout.names)))


def _has_empty_field(table: pa.Table, layout: Layout) -> bool:
    """An empty string field: a blank line, or spaces that are not single separators."""
    return any(pc.min(pc.binary_length(table.column(name))).as_py() == 0
               for name in table.column_names if name not in layout.numbers)


def _rewritten(data: bytes | bytearray, first: int, offset: int, path, layout: Layout
               ) -> tuple[bytes, np.ndarray, int]:
    """The block's non-blank lines with single spaces, their line numbers, and the number of lines;
    DataError for the first line that is not UTF-8 or has the wrong number of fields (or is blank,
    where blank lines are refused)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {offset + e.start})", path=path,
                        line=first + data.count(b"\n", 0, e.start)) from None
    if offset == 0:
        text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    ambiguous = not data.isascii() or any(c in data for c in _ODD_BYTES[4:])
    n = len(layout.names)
    kept, numbers = [], []
    for k, line in enumerate(lines):
        fields = line.split()
        narrow = len(line.encode().split()) if ambiguous else len(fields)
        if len(fields) != n or narrow != n:
            if not fields and layout.blank_lines:
                continue
            note = " (non-ASCII whitespace?)" if narrow != len(fields) else ""
            got = len(fields) if len(fields) != n else narrow
            raise DataError(layout.wrong_count(got, line.strip(), note), path=path, line=first + k)
        kept.append(" ".join(fields))
        numbers.append(first + k)
    return ("\n".join(kept) + "\n").encode() if kept else b"", np.array(numbers, dtype=np.int64), len(lines)


def _bad_number(text: bytes, numbers: np.ndarray, path, layout: Layout, error: Exception) -> DataError:
    """The DataError for the first field that should be a number and is not (found by bisection)."""
    table = _arrow_table(text, layout, numbers_as_text=True)
    for name in layout.numbers:
        col = table.column(name).combine_chunks()
        if _casts(col):
            continue
        lo, hi = 0, len(col)  # col[:lo] casts; col[lo:hi] holds the first field that does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _casts(col[lo:mid]) else (lo, mid)
        return DataError(f"{name} '{col[lo].as_py()}' is not a number", path=path, line=int(numbers[lo]))
    return DataError(f"cannot parse these lines ({error})", path=path, line=int(numbers[0]))


def _casts(col: pa.Array) -> bool:
    try:
        pc.cast(col, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    """The per-block arrays of a column as one (empty for no blocks)."""
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype=dtype)


def equal_to(column, text: str) -> np.ndarray:
    """``column == text`` as a numpy bool array."""
    return pc.equal(column, text).to_numpy(zero_copy_only=False)


# --- ids as codes --------------------------------------------------------------------------------

def as_strings(ids) -> pa.Array | pa.ChunkedArray:
    """An Arrow string column of ``ids`` (an Arrow column already, a numpy array or a sequence of str)."""
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        return ids
    return pa.array(ids if isinstance(ids, np.ndarray) else list(ids), type=pa.string())


def _chunks(col: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(col.chunks) if isinstance(col, pa.ChunkedArray) else [col]


class Vocabulary:
    """Ids as int32 codes (0, 1, ... in order of first appearance), shared by a trial list, its score
    file and the embeddings' ids. Lookups are pyarrow's hash tables, on whole columns at a time."""

    def __init__(self) -> None:
        self._values = pa.array([], type=pa.string())
        self._list: list[str] | None = None
        self._objects: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._values)

    @property
    def values(self) -> pa.Array:
        """The ids, indexed by code, as an Arrow string array."""
        return self._values

    def codes(self, ids, grow: bool = False) -> np.ndarray:
        """Code of each id (an Arrow string column or a sequence of str): new ids get the next codes
        when ``grow``, else -1. The array may be a read-only view of Arrow's memory."""
        col = as_strings(ids)
        if len(self._values) == 0:
            if not grow or len(col) == 0:
                return np.full(len(col), -1, dtype=np.int32)
            return self._add(col)
        found = pc.index_in(col, value_set=self._values)
        if found.null_count == 0:
            return found.to_numpy()
        codes = np.array(found.fill_null(-1).to_numpy(), dtype=np.int32)
        if grow:
            rows = np.flatnonzero(codes < 0)
            codes[rows] = self._add(col.take(rows))
        return codes

    def pair_codes(self, enroll: pa.ChunkedArray, test: pa.ChunkedArray, grow: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`codes` of two columns at once (one hash lookup each); runs of one enroll id on
        consecutive lines (trial lists grouped by enroll utterance) are looked up once."""
        runs = pc.run_end_encode(enroll)
        runs = runs.chunks if isinstance(runs, pa.ChunkedArray) else [runs]
        heads = sum(len(r.values) for r in runs)
        if not runs or heads * 2 > len(enroll):  # most lines start a run: nothing to save
            codes = self.codes(pa.chunked_array(_chunks(enroll) + _chunks(test), type=pa.string()), grow)
            return codes[:len(enroll)], codes[len(enroll):]
        codes = self.codes(pa.chunked_array([r.values for r in runs] + _chunks(test), type=pa.string()), grow)
        lengths = np.concatenate([np.diff(r.run_ends.to_numpy(), prepend=0) for r in runs])
        return np.repeat(codes[:heads], lengths), codes[heads:]

    def _add(self, col) -> np.ndarray:
        """Codes for ids not in the vocabulary (in order of first appearance)."""
        encoded = pc.dictionary_encode(col)
        chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
        chunks = [c for c in chunks if len(c)] or chunks
        base = len(self._values)
        self._values = pa.concat_arrays([self._values, chunks[0].dictionary])
        self._list = self._objects = None
        codes = np.concatenate([c.indices.to_numpy() for c in chunks]).astype(np.int32, copy=False)
        codes += np.int32(base)
        return codes

    def ids(self) -> list[str]:
        """The ids, indexed by code."""
        if self._list is None:
            self._list = self._values.to_pylist()
        return self._list

    def id_objects(self) -> np.ndarray:
        """The ids as a numpy object array (fancy-indexable by code arrays)."""
        if self._objects is None:
            self._objects = np.array(self.ids(), dtype=object)
        return self._objects


# --- writing ----------------------------------------------------------------------------------------

WRITE_LINES = 1 << 16  # lines formatted at a time


def write_lines(f, columns: Sequence[pa.Array | pa.ChunkedArray], newline: bool = True) -> None:
    """Write one line per row: its fields (Arrow string columns) joined by single spaces, then a
    newline (unless the last field ends the line itself: ``newline=False``)."""
    lines = pc.binary_join_element_wise(*columns, " ") if len(columns) > 1 else columns[0]
    if newline:
        lines = pc.binary_join_element_wise(lines, "", "\n")
    for chunk in lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]:
        if len(chunk):
            offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[chunk.offset:chunk.offset + len(chunk) + 1]
            f.write(memoryview(chunk.buffers()[2])[int(offsets[0]):int(offsets[-1])])


def write_rows(f, num_rows: int, columns_of: Callable[[slice], list], newline: bool = True,
               lines_per_block: int | None = None) -> None:
    """Write ``num_rows`` lines, the fields of rows ``s`` given by ``columns_of(s)``: a block of lines
    at a time, the next block formatted (in a second thread: numpy and pyarrow release the GIL) while
    this one is joined and written."""
    from concurrent.futures import ThreadPoolExecutor

    step = WRITE_LINES if lines_per_block is None else lines_per_block
    blocks = [slice(start, min(num_rows, start + step)) for start in range(0, num_rows, step)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(columns_of, blocks[0]) if blocks else None
        for k in range(len(blocks)):
            columns = ahead.result()
            ahead = pool.submit(columns_of, blocks[k + 1]) if k + 1 < len(blocks) else None
            write_lines(f, columns, newline)
