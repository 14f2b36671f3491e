"""Kaldi table files (``<key> <value...>`` per line): one reader (and writer) for every such file.

Rows come back as ``(line number, key, value)``; a malformed or empty line is a DataError (or, for
``validate_data_dir``, a Problem) naming the file and line. Also the two-column tables that other
modules read directly: ``utt2spk`` and VoxCeleb's ``<speaker> <path>`` train lists.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pyspeaker.errors import DataError
from pyspeaker.fileio import atomic_file, gc_paused

Row = tuple[int, str, "str | list[str]"]
_ID = re.compile(r"\S+")


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a data dir: the file, the line (None for the whole file) and what."""

    path: str
    line: int | None
    message: str

    def format(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"

    def to_error(self) -> DataError:
        return DataError(self.message, path=self.path, line=self.line)


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", path=path,
                        line=data[:e.start].count(b"\n") + 1) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _fields_text(min_fields: int, max_fields: int | None) -> str:
    if max_fields is None:
        return f"at least {min_fields} fields"
    if max_fields == min_fields:
        return f"{min_fields} fields"
    return f"{min_fields} to {max_fields} fields"


def _bad_line_message(line: str, expected: str) -> str:
    if not line.strip():
        return "empty line"
    return f"expected {expected}, got {len(line.split())}: {line.strip()!r}"


def _parse_table(path: Path, min_fields: int, max_fields: int | None, rest_of_line: bool,
                 form: str | None) -> tuple[list[Row], list[Problem]]:
    """Split every line; malformed lines become problems and are left out of the rows.

    Written as list comprehensions because data dirs of a million utterances are common.
    """
    lines = _read_lines(path)
    split = [line.split() for line in lines]
    max_n = max_fields or sys.maxsize
    good = [min_fields <= len(fields) <= max_n for fields in split]
    numbered: Iterable[tuple[int, list[str]]] = enumerate(split, 1)
    problems = []
    if not all(good):
        expected = _fields_text(min_fields, max_fields) + (f" ({form})" if form else "")
        problems = [Problem(str(path), n, _bad_line_message(lines[n - 1], expected))
                    for n, ok in enumerate(good, 1) if not ok]
        numbered = [(n, fields) for (n, fields), ok in zip(enumerate(split, 1), good) if ok]
    if rest_of_line:  # a command keeps its own spacing
        rows = [(n, f[0], lines[n - 1].split(None, 1)[1].rstrip()) for n, f in numbered]
    elif max_fields == 2:
        rows = [(n, f[0], f[1]) for n, f in numbered]
    else:
        rows = [(n, f[0], f[1:]) for n, f in numbered]
    return rows, problems


def read_table(path: str | os.PathLike, *, min_fields: int = 2, max_fields: int | None = 2,
               rest_of_line: bool = False, form: str | None = None) -> list[Row]:
    """Read a Kaldi table file as ``(line number, key, value)`` rows, in file order.

    The value is the second field when ``max_fields == 2``, the rest of the line as one string when
    ``rest_of_line`` (wav.scp commands contain spaces), else the list of the remaining fields.
    Raises DataError (path, line, what) for the first empty or malformed line; ``form`` (e.g.
    ``"<utt> <speaker>"``) is quoted in that message.
    """
    with gc_paused():
        rows, problems = _parse_table(Path(path), min_fields, max_fields, rest_of_line, form)
    if problems:
        raise problems[0].to_error()
    return rows


def _key_problems(path: Path, rows: list[Row]) -> list[Problem]:
    """Duplicate keys (naming both lines) and the first line out of C-locale order.

    The row-by-row loops only run when something is wrong (fast on a million lines).
    """
    problems = []
    first_line = {key: n for n, key, _ in reversed(rows)}
    if len(first_line) < len(rows):
        problems += [Problem(str(path), n, f"duplicate id {key!r} (also on line {first_line[key]})")
                     for n, key, _ in rows if first_line[key] != n]
    keys = [key for _, key, _ in rows]
    if keys != sorted(keys):
        n, key, prev_n, prev = next((n, key, prev_n, prev) for (prev_n, prev, _), (n, key, _)
                                    in zip(rows, rows[1:]) if key < prev)
        problems.append(Problem(str(path), n, f"not sorted in C-locale order: {key!r} comes after "
                                              f"{prev!r} (line {prev_n}); sort with LC_ALL=C sort"))
    return problems


def _first_values(rows: list[Row]) -> tuple[dict, dict[str, int]]:
    """key -> value and key -> line, keeping the first of duplicate keys."""
    values = {key: value for _, key, value in rows}
    if len(values) == len(rows):  # no duplicates (the usual case): no row-by-row loop
        return values, {key: n for n, key, _ in rows}
    values = {}
    lines: dict[str, int] = {}
    for n, key, value in rows:
        if key not in values:
            values[key] = value
            lines[key] = n
    return values, lines


# --- writing, as Kaldi expects: one line per key, atomically

def _check_ids(ids: Iterable[str], what: str, path: Path) -> None:
    bad = next((i for i in ids if not _ID.fullmatch(i)), None)
    if bad is not None:
        raise DataError(f"invalid {what} {bad!r}: ids must be non-empty and contain no whitespace", path=path)


def _format_time(seconds: float) -> str:
    text = repr(float(seconds))
    return text[:-2] if text.endswith(".0") else text


def _write_lines(path: Path, lines: list[str]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines))


def read_voxceleb_train_list(path: str | os.PathLike) -> list[tuple[str, str]]:
    """A VoxCeleb train list, ``<speaker> <path>`` per line, as (speaker, path) pairs in file order."""
    return [(spk, wav) for _, spk, wav in read_table(path, form="<speaker> <path>")]


def read_utt2spk(path: str | os.PathLike) -> dict[str, str]:
    """A Kaldi ``utt2spk`` file as a dict (errors name the file and line)."""
    return {key: value for _, key, value in read_table(path, form="<utt> <speaker>")}
