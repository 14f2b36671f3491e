"""Kaldi data directories: read, validate, write and split.

A data dir holds ``wav.scp`` (``<recording> <path>`` or ``<recording> <command> |``), ``utt2spk``,
``spk2utt`` (derived from utt2spk when absent), and optionally ``segments``
(``<utt> <recording> <start> <end>``, seconds, end -1 = to the end of the recording) and ``utt2dur``.
Files are sorted in C-locale order (Python's ``sorted`` for ASCII ids), as Kaldi requires.
Relative audio paths in wav.scp are relative to the current directory, as in Kaldi.

``validate_data_dir`` collects every problem with its file and line; ``DataDir.load`` raises the
first one. Both share one scan, so they always agree on what is wrong.
"""
from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from pyspeaker.audio import load_audio, segment_problem
from pyspeaker.data.tables import (Problem, Row, _check_ids, _first_values, _format_time, _key_problems,  # noqa: F401
                                   _parse_table, _write_lines, read_table, read_utt2spk, read_voxceleb_train_list)
from pyspeaker.errors import ConfigError, DataError
from pyspeaker.fileio import gc_paused
from pyspeaker.log import get_logger

log = get_logger(__name__)

REQUIRED_FILES = ("wav.scp", "utt2spk")
# How each file's lines are split: (min fields, max fields, value = rest of line, expected form).
_FILE_SPECS = {
    "wav.scp": (2, None, True, "<recording> <path or command |>"),
    "segments": (4, 4, False, "<utt> <recording> <start> <end>"),
    "utt2spk": (2, 2, False, "<utt> <speaker>"),
    "spk2utt": (2, None, False, "<speaker> <utt> [<utt> ...]"),
    "utt2dur": (2, 2, False, "<utt> <duration>"),
}


# ---------------------------------------------------------------------------------------------
# The data dir


@dataclass
class DataDir:
    """A Kaldi data dir in memory. ``lines`` maps file name -> id -> line (for error messages)."""

    path: str
    wav_scp: dict[str, str]
    utt2spk: dict[str, str]
    spk2utt: dict[str, list[str]]
    segments: dict[str, tuple[str, float, float]] | None = None
    utt2dur: dict[str, float] | None = None
    lines: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)

    @property
    def utts(self) -> list[str]:
        return sorted(self.utt2spk)

    @property
    def speakers(self) -> list[str]:
        return sorted(self.spk2utt)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def line_of(self, name: str, key: str) -> int | None:
        return self.lines.get(name, {}).get(key)

    @classmethod
    def load(cls, path: str | os.PathLike, validate: bool = True) -> "DataDir":
        """Read a data dir; raise the first problem as a DataError.

        Malformed lines and missing files always raise; with ``validate`` also every consistency
        problem that ``validate_data_dir`` reports (without reading audio).
        """
        scan = _scan(path, check=validate)
        problems = scan.malformed + scan.inconsistent
        if problems:
            raise problems[0].to_error()
        assert scan.datadir is not None
        return scan.datadir


def derive_spk2utt(utt2spk: dict[str, str]) -> dict[str, list[str]]:
    """spk2utt as Kaldi's utt2spk_to_spk2utt.pl gives it for a sorted utt2spk."""
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return dict(sorted(spk2utt.items()))


@dataclass
class _Scan:
    datadir: DataDir | None = None
    malformed: list[Problem] = field(default_factory=list)  # unreadable input: the dir can't be built
    inconsistent: list[Problem] = field(default_factory=list)  # readable but wrong

    def sort(self) -> None:
        self.malformed.sort(key=_problem_order)
        self.inconsistent.sort(key=_problem_order)


def _problem_order(problem: Problem) -> tuple[str, int]:
    return problem.path, problem.line or 0


def _scan(path: str | os.PathLike, check: bool = True) -> _Scan:
    """Read a data dir; with ``check`` also collect the consistency problems."""
    with gc_paused():
        return _scan_unpaused(Path(path), check)


def _scan_unpaused(d: Path, check: bool) -> _Scan:
    scan = _Scan()
    if not d.is_dir():
        scan.malformed.append(Problem(str(d), None, "data directory does not exist"))
        return scan
    tables = _read_tables(d, scan)
    if all(name in tables for name in REQUIRED_FILES):
        scan.datadir = _build(d, tables, scan)
    if check:
        for name, rows in tables.items():
            if (d / name).stat().st_size == 0:
                scan.inconsistent.append(Problem(str(d / name), None, "file is empty"))
            scan.inconsistent += _key_problems(d / name, rows)
        if scan.datadir is not None:
            scan.inconsistent += _consistency_problems(scan.datadir, "spk2utt" in tables)
    scan.sort()
    return scan


def _read_tables(d: Path, scan: _Scan) -> dict[str, list[Row]]:
    """Parse each file present; missing required files and malformed lines go to ``scan.malformed``."""
    tables: dict[str, list[Row]] = {}
    for name, (min_f, max_f, rest, form) in _FILE_SPECS.items():
        f = d / name
        if not f.exists():
            if name in REQUIRED_FILES:
                scan.malformed.append(Problem(str(f), None, "missing (required file)"))
            continue
        try:
            rows, bad_lines = _parse_table(f, min_f, max_f, rest, form)
        except DataError as e:  # unreadable file (not UTF-8)
            scan.malformed.append(Problem(e.path or str(f), e.line, e.message))
            continue
        scan.malformed += bad_lines
        tables[name] = rows
    return tables


def _parse_number(text: str, what: str, path: Path, line: int, scan: _Scan) -> float | None:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        scan.malformed.append(Problem(str(path), line, f"{what} {text!r} is not a number"))
        return None
    return value


def _build(d: Path, tables: dict[str, list[Row]], scan: _Scan) -> DataDir:
    """Make the DataDir from parsed rows; unparsable numbers go to ``scan.malformed``."""
    lines: dict[str, dict[str, int]] = {}
    values: dict[str, dict] = {}
    for name, rows in tables.items():
        values[name], lines[name] = _first_values(rows)
    segments = None
    if "segments" in values:
        segments = {}
        for utt, (rec, start_text, end_text) in values["segments"].items():
            n = lines["segments"][utt]
            start = _parse_number(start_text, "start time", d / "segments", n, scan)
            end = _parse_number(end_text, "end time", d / "segments", n, scan)
            if start is not None and end is not None:
                segments[utt] = (rec, start, end)
    utt2dur = None
    if "utt2dur" in values:
        utt2dur = {}
        for utt, text in values["utt2dur"].items():
            dur = _parse_number(text, "duration", d / "utt2dur", lines["utt2dur"][utt], scan)
            if dur is not None:
                utt2dur[utt] = dur
    utt2spk = values["utt2spk"]
    spk2utt = values.get("spk2utt") or derive_spk2utt(utt2spk)
    return DataDir(path=str(d), wav_scp=values["wav.scp"], utt2spk=utt2spk, spk2utt=spk2utt,
                   segments=segments, utt2dur=utt2dur, lines=lines)


def _consistency_problems(dd: DataDir, has_spk2utt: bool) -> list[Problem]:
    utts = dd.utts
    problems = _audio_link_problems(dd) + _speaker_order_problems(dd, utts)
    if has_spk2utt:
        problems += _spk2utt_problems(dd)
    if dd.utt2dur is not None:
        problems += _utt2dur_problems(dd)
    return problems


def _audio_link_problems(dd: DataDir) -> list[Problem]:
    """Every utterance has audio, every audio entry belongs to an utterance, segments make sense."""
    problems = []
    audio_file = "wav.scp" if dd.segments is None else "segments"
    audio_ids = dd.wav_scp if dd.segments is None else dd.segments
    for utt in sorted(dd.utt2spk.keys() - audio_ids.keys()):
        problems.append(Problem(dd.file("utt2spk"), dd.line_of("utt2spk", utt),
                                f"utterance {utt!r} has no audio: it is not in {audio_file}"))
    what = "recording" if dd.segments is None else "segment"
    for key in sorted(audio_ids.keys() - dd.utt2spk.keys()):
        problems.append(Problem(dd.file(audio_file), dd.line_of(audio_file, key),
                                f"{what} {key!r} is not in utt2spk"))
    for utt, (rec, start, end) in (dd.segments or {}).items():
        where = (dd.file("segments"), dd.line_of("segments", utt))
        if rec not in dd.wav_scp:
            problems.append(Problem(*where, f"recording {rec!r} of segment {utt!r} is not in wav.scp"))
        message = segment_problem(start, end, duration=math.inf)
        if message:
            problems.append(Problem(*where, message))
    return problems


def _speaker_order_problems(dd: DataDir, utts: list[str]) -> list[Problem]:
    """Kaldi needs each speaker's utterances contiguous in sorted order (spk2utt and utt2spk agree)."""
    speakers = [dd.utt2spk[utt] for utt in utts]
    runs = [spk for spk, _ in itertools.groupby(speakers)]
    if len(runs) == len(set(runs)):
        return []
    seen: set[str] = set()
    prev_spk = None
    for utt in utts:
        spk = dd.utt2spk[utt]
        if spk != prev_spk and spk in seen:
            return [Problem(dd.file("utt2spk"), dd.line_of("utt2spk", utt),
                            f"utt2spk is not sorted by speaker: utterance {utt!r} of speaker {spk!r} "
                            f"comes after utterances of speaker {prev_spk!r} "
                            "(ids should have the speaker id as prefix)")]
        seen.add(spk)
        prev_spk = spk
    return []


def _spk2utt_problems(dd: DataDir) -> list[Problem]:
    path = dd.file("spk2utt")
    expected = derive_spk2utt(dd.utt2spk)
    problems = []
    for spk, listed in dd.spk2utt.items():
        line = dd.line_of("spk2utt", spk)
        message = _spk2utt_line_problem(dd, spk, listed, expected.get(spk, []))
        if message:
            problems.append(Problem(path, line, f"speaker {spk!r}: {message} (spk2utt must match utt2spk; "
                                                "derive it with utils/utt2spk_to_spk2utt.pl)"))
    for spk in expected:
        if spk not in dd.spk2utt:
            first_utt = expected[spk][0]
            problems.append(Problem(path, None, f"speaker {spk!r} of utt2spk (line "
                                                f"{dd.line_of('utt2spk', first_utt)}) is missing"))
    return problems


def _spk2utt_line_problem(dd: DataDir, spk: str, listed: list[str], expected: list[str]) -> str | None:
    if listed == expected:
        return None
    for utt in listed:
        if utt not in dd.utt2spk:
            return f"utterance {utt!r} is not in utt2spk"
        if dd.utt2spk[utt] != spk:
            return (f"utterance {utt!r} belongs to speaker {dd.utt2spk[utt]!r} in utt2spk "
                    f"(line {dd.line_of('utt2spk', utt)})")
    if len(set(listed)) != len(listed):
        return "an utterance is listed twice"
    missing = [u for u in expected if u not in set(listed)]
    if missing:
        return f"utterance {missing[0]!r} of utt2spk (line {dd.line_of('utt2spk', missing[0])}) is missing"
    return "utterances are not in sorted order"


def _utt2dur_problems(dd: DataDir) -> list[Problem]:
    path, utt2dur = dd.file("utt2dur"), dd.utt2dur or {}
    problems = []
    for utt, dur in utt2dur.items():
        if utt not in dd.utt2spk:
            problems.append(Problem(path, dd.line_of("utt2dur", utt), f"utterance {utt!r} is not in utt2spk"))
        elif dur <= 0:
            problems.append(Problem(path, dd.line_of("utt2dur", utt), f"duration {dur:g} is not positive"))
    missing = sorted(dd.utt2spk.keys() - utt2dur.keys())
    if missing:
        problems.append(Problem(path, None, f"{len(missing)} utterance(s) of utt2spk have no duration, "
                                            f"the first is {missing[0]!r}"))
    return problems


def validate_data_dir(path: str | os.PathLike, check_audio: bool = True, sample_rate: int | None = None,
                      *, progress: bool = False) -> list[Problem]:
    """Every problem of a data dir, sorted by file and line; an empty list means it is fine.

    With ``check_audio`` every wav.scp entry is read (files decoded, ``cmd |`` pipes run) and every
    segment checked against its recording's length; ``sample_rate`` also checks each recording's
    rate. ``progress`` shows a tqdm bar for the audio check.
    """
    scan = _scan(path)
    problems = scan.malformed + scan.inconsistent
    if check_audio and scan.datadir is not None:
        problems += _audio_problems(scan.datadir, sample_rate, progress)
    return sorted(problems, key=_problem_order)


def _audio_problems(dd: DataDir, sample_rate: int | None, progress: bool) -> list[Problem]:
    from tqdm import tqdm

    problems = []
    durations: dict[str, float] = {}
    for rec in tqdm(sorted(dd.wav_scp), desc="checking audio", unit="rec", disable=not progress):
        try:
            samples, rate = load_audio(dd.wav_scp[rec], path_for_errors=dd.file("wav.scp"),
                                       line=dd.line_of("wav.scp", rec), expected_sample_rate=sample_rate)
        except DataError as e:
            problems.append(Problem(e.path or dd.file("wav.scp"), e.line, e.message))
            continue
        durations[rec] = len(samples) / rate
    for utt, (rec, start, end) in sorted((dd.segments or {}).items()):
        # Ranges that are wrong whatever the length were reported by the scan already.
        if rec in durations and segment_problem(start, end, math.inf) is None:
            message = segment_problem(start, end, durations[rec])
            if message:
                problems.append(Problem(dd.file("segments"), dd.line_of("segments", utt), message))
    return problems


# ---------------------------------------------------------------------------------------------
# Writing and splitting


def write_data_dir(path: str | os.PathLike, wav_scp: dict[str, str], utt2spk: dict[str, str], *,
                   segments: dict[str, tuple[str, float, float]] | None = None,
                   utt2dur: dict[str, float] | None = None) -> None:
    """Write a data dir: sorted wav.scp, utt2spk, derived spk2utt, optional segments and utt2dur.

    Each file is replaced atomically. A stale segments/utt2dur from an earlier write is removed
    when not given, since it would no longer match.
    """
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    _check_ids(wav_scp, "recording id", d / "wav.scp")
    bad_entry = next((rec for rec, entry in wav_scp.items() if not entry.strip() or "\n" in entry), None)
    if bad_entry is not None:
        raise DataError(f"invalid wav.scp entry {wav_scp[bad_entry]!r} for recording {bad_entry!r}",
                        path=d / "wav.scp")
    _check_ids(utt2spk, "utterance id", d / "utt2spk")
    _check_ids(utt2spk.values(), "speaker id", d / "utt2spk")
    _check_ids(segments or {}, "utterance id", d / "segments")
    _check_ids((rec for rec, _, _ in (segments or {}).values()), "recording id", d / "segments")
    _write_lines(d / "wav.scp", [f"{rec} {wav_scp[rec].strip()}" for rec in sorted(wav_scp)])
    _write_lines(d / "utt2spk", [f"{utt} {utt2spk[utt]}" for utt in sorted(utt2spk)])
    _write_lines(d / "spk2utt", [f"{spk} {' '.join(utts)}" for spk, utts in derive_spk2utt(utt2spk).items()])
    optional = {
        "segments": None if segments is None else [
            f"{utt} {rec} {_format_time(start)} {_format_time(end)}"
            for utt, (rec, start, end) in sorted(segments.items())],
        "utt2dur": None if utt2dur is None else [f"{utt} {utt2dur[utt]:.3f}" for utt in sorted(utt2dur)],
    }
    for name, lines in optional.items():
        if lines is not None:
            _write_lines(d / name, lines)
        elif (d / name).exists():
            log.info("removing stale %s", d / name)
            (d / name).unlink()


def split_data_dir(datadir: DataDir, nj: int) -> list[list[str]]:
    """Split the sorted utterances into ``nj`` contiguous, non-empty parts whose sizes differ by at
    most one (the first ones get the extra utterance), like Kaldi's ``split_data.sh --per-utt``."""
    utts = datadir.utts
    if nj < 1 or nj > len(utts):
        raise ConfigError(f"cannot split {len(utts)} utterance(s) into {nj} jobs "
                          f"(--nj must be between 1 and {len(utts)})", path=datadir.path)
    size, extra = divmod(len(utts), nj)
    parts, begin = [], 0
    for job in range(nj):
        end = begin + size + (1 if job < extra else 0)
        parts.append(utts[begin:end])
        begin = end
    return parts
