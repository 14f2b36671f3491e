"""Scoring a trial list end to end: ids -> embedding rows -> back-end -> score norm -> calibration -> file.

Used by ``pyspeaker score`` (and timed by ``bench/score_bench.py``). The trial list is read as codes
(:mod:`pyspeaker.scoring.lists`), so ten million trials never become Python strings; the output is
formatted and written a block of lines at a time.

Next to ``scores.txt`` the command writes ``scores.json`` (see :func:`sidecar_path`): the trial list,
embeddings, back-end, normalisation and calibration that produced the scores. ``pyspeaker
compute-metrics`` reads it to label its results, and ignores it when it no longer describes the
scores file (different size or line count).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pyspeaker.errors import DataError
from pyspeaker.scoring.lists import TrialCodes

# lines formatted per write
_WRITE_LINES = 1 << 19


def rows_of_codes(trials: TrialCodes, ids: list[str]) -> np.ndarray:
    """Row in ``ids`` of every vocabulary code of the trials (-1: no embedding)."""
    codes = trials.vocab.lookup([u.encode("utf-8") for u in ids]).astype(np.int64)
    row_of_code = np.full(len(trials.vocab), -1, dtype=np.int64)
    known = np.flatnonzero(codes >= 0)
    row_of_code[codes[known]] = known
    return row_of_code


def embedding_rows(trials: TrialCodes, codes: np.ndarray, ids: list[str], side: str,
                   row_of_code: np.ndarray | None = None) -> np.ndarray:
    """Row of each trial's ``side`` id in ``ids``; DataError naming the first trial without one."""
    if row_of_code is None:
        row_of_code = rows_of_codes(trials, ids)
    vocab_ids = trials.vocab.ids()
    rows = row_of_code[codes]
    missing = np.flatnonzero(rows < 0)
    if missing.size:
        i = int(missing[0])
        more = f" ({missing.size} trials in all lack an embedding)" if missing.size > 1 else ""
        raise DataError(f"no embedding for {side} id '{vocab_ids[codes[i]]}'{more}", path=trials.path,
                        line=trials.line(i))
    return rows


def read_num_utts(path: str | os.PathLike, ids: list[str]) -> np.ndarray:
    """Enrollment utterance counts per row of ``ids`` from Kaldi's ``num_utts.ark`` (``<id> <count>``);
    ids it does not list count 1."""
    from pyspeaker.data.kaldi_dir import read_table

    counts = {}
    for line, key, value in read_table(path, form="<id> <count>"):
        try:
            counts[key] = int(value)
        except ValueError:
            raise DataError(f"count '{value}' is not an integer", path=path, line=line) from None
        if counts[key] < 1:
            raise DataError(f"count {value} must be at least 1", path=path, line=line)
    return np.array([counts.get(u, 1) for u in ids], dtype=np.float64)


def score_codes(trials: TrialCodes, enroll_ids: list[str], enroll_emb: np.ndarray, *,
                test_ids: list[str] | None = None, test_emb: np.ndarray | None = None, backend=None,
                score_norm: str = "none", cohort: np.ndarray | None = None, top_n: int = 300,
                num_utts: np.ndarray | None = None, calibration=None) -> np.ndarray:
    """Scores of every trial in trial order (float32 for plain cosine, else float64)."""
    from pyspeaker.scoring.backend import CosineBackend, score_rows
    from pyspeaker.scoring.norm import score_norm_rows

    backend = CosineBackend() if backend is None else backend
    row_of_code = rows_of_codes(trials, enroll_ids)
    if test_ids is None:
        test_ids, test_emb, test_row_of_code = enroll_ids, enroll_emb, row_of_code
    else:
        test_row_of_code = rows_of_codes(trials, test_ids)
    enroll_rows = embedding_rows(trials, trials.enroll, enroll_ids, "enroll", row_of_code)
    test_rows = embedding_rows(trials, trials.test, test_ids, "test", test_row_of_code)
    scores = score_rows(backend, enroll_emb, enroll_rows, test_emb, test_rows, num_utts)
    if score_norm != "none":
        if cohort is None:
            raise DataError(f"{score_norm} needs a cohort (--cohort, or a back-end dir with cohort.h5)")
        scores = score_norm_rows(backend, scores, enroll_emb, enroll_rows, test_emb, test_rows, cohort, score_norm,
                                 top_n, num_utts)
    if calibration is not None:
        scores = calibration.apply(scores)
    return scores


_DIGITS3 = np.array([list(b"%03d" % i) for i in range(1000)], dtype=np.uint8)  # "000" .. "999"


def score_text(scores: np.ndarray, precision: int = 6) -> list[bytes]:
    """``b"%.{precision}f\\n" % score`` for every score, byte for byte, vectorised (precision 1..9).

    The digits come from ``rint(|x| 10^p)`` in float64, which is the correctly rounded decimal unless
    the scaled value is within 1e-6 of a rounding tie or large (>= 1e9); those few, and non-finite
    values, are formatted by Python. Each row is built right-aligned in a fixed-width uint8 matrix
    (padding NULs, sign, integer digits, point, decimals, newline; digits three at a time from a
    table), read back shifted left past its unused leading columns through a sliding-window view
    (the bytes after a row's newline are then the next row's padding NULs), and turned into bytes
    objects by numpy, which drops the trailing NULs of a fixed-width bytes array.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    if not 1 <= precision <= 9:
        raise ValueError(f"precision must be 1..9, got {precision}")
    x = np.asarray(scores, dtype=np.float64)
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
    neg = np.signbit(x)
    pad = int_digits  # the most unused leading columns a row can have (no sign, one digit)
    body = 1 + int_digits + 1 + precision + 1  # sign, integer digits, '.', decimals, '\n'
    width = pad + body
    rows = np.zeros((m, width), dtype=np.uint8)
    # integer digits right-aligned in columns [pad + 1, pad + int_digits], then blank the unused ones
    groups = -(-int_digits // 3)
    digits = np.hstack([_DIGITS3[(ip // 1000 ** g) % 1000] for g in reversed(range(groups))])[:, -int_digits:]
    rows[:, pad + 1:pad + 1 + int_digits] = digits
    unused = np.arange(int_digits)[None, :] < (int_digits - n_int)[:, None]
    rows[:, pad + 1:pad + 1 + int_digits][unused] = 0
    signed = np.flatnonzero(neg)
    rows[signed, pad + int_digits - n_int[signed]] = ord("-")
    point = pad + 1 + int_digits
    rows[:, point] = ord(".")
    groups = -(-precision // 3)
    decimals = np.hstack([_DIGITS3[(fp * 10 ** (3 * groups - precision) // 1000 ** g) % 1000]
                          for g in reversed(range(groups))])[:, :precision]
    rows[:, point + 1:point + 1 + precision] = decimals
    rows[:, -1] = ord("\n")
    leading = pad + int_digits - n_int + (~neg)  # NULs before the first character
    flat = np.concatenate([rows.reshape(-1), np.zeros(width, dtype=np.uint8)])
    shifted = sliding_window_view(flat, body)[np.arange(m) * width + leading]
    text = np.ascontiguousarray(shifted).view(f"S{body}").reshape(m).tolist()
    fmt = b"%%.%df\n" % precision
    for i in np.flatnonzero(~fast).tolist():
        text[i] = fmt % x[i]
    return text


def write_scores(path: str | os.PathLike, trials: TrialCodes, scores: np.ndarray, precision: int = 6) -> int:
    """``<enroll> <test> <score>`` lines in trial order, written atomically a block at a time; returns
    the file size in bytes. Each id is encoded once (with its space); a block is one ``b"".join``."""
    from pyspeaker.fileio import atomic_file

    id_bytes = np.array([u.encode("utf-8") + b" " for u in trials.vocab.ids()], dtype=object)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            for start in range(0, len(scores), _WRITE_LINES):
                stop = min(len(scores), start + _WRITE_LINES)
                parts: list = [None] * (3 * (stop - start))
                parts[0::3] = id_bytes[trials.enroll[start:stop]].tolist()
                parts[1::3] = id_bytes[trials.test[start:stop]].tolist()
                parts[2::3] = score_text(scores[start:stop], precision)
                f.write(b"".join(parts))
        size = tmp.stat().st_size
    return size


def sidecar_path(scores_path: str | os.PathLike) -> Path:
    """``scores.txt`` -> ``scores.json`` (any other name gets ``.json`` appended)."""
    p = Path(scores_path)
    return p.with_suffix(".json") if p.suffix == ".txt" else p.with_name(p.name + ".json")


def check_sidecar_free(scores_path: str | os.PathLike) -> None:
    """Refuse to write scores whose sidecar name is taken by some other file (e.g. ``cal.txt`` next
    to a ``cal.json`` calibration): checked before anything is written."""
    path = sidecar_path(scores_path)
    if not path.exists():
        return
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        info = None
    if not isinstance(info, dict) or "scores_bytes" not in info:
        raise DataError(f"the scores' sidecar would replace {path}, which is not a scores sidecar; "
                        f"choose another output name", path=scores_path)


def write_sidecar(scores_path: str | os.PathLike, info: dict) -> Path:
    from pyspeaker.fileio import write_text_atomic

    path = sidecar_path(scores_path)
    write_text_atomic(path, json.dumps(info, indent=2) + "\n")
    return path


def read_sidecar(scores_path: str | os.PathLike, num_scores: int | None = None) -> dict | None:
    """The sidecar of a scores file if it still describes it (same size and line count), else None."""
    path = sidecar_path(scores_path)
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if info.get("scores_bytes") != Path(scores_path).stat().st_size:
        return None
    if num_scores is not None and info.get("num_trials") != num_scores:
        return None
    return info
