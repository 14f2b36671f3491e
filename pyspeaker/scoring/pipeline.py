"""Scoring a trial list end to end: ids -> embedding rows -> back-end -> score norm -> calibration.

Used by ``pyspeaker score`` (and timed by ``bench/score_bench.py``). The trial list is read as codes
(:func:`pyspeaker.data.trials.read_trials`), so ten million trials never become Python strings; the
scores are written by :func:`pyspeaker.scoring.lists.write_scores`.

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

from pyspeaker.data.trials import Trials
from pyspeaker.errors import DataError


def rows_of_codes(trials: Trials, ids: list[str]) -> np.ndarray:
    """Row in ``ids`` of every vocabulary code of the trials (-1: no embedding)."""
    codes = trials.vocab.codes(ids).astype(np.int64)
    row_of_code = np.full(len(trials.vocab), -1, dtype=np.int64)
    known = np.flatnonzero(codes >= 0)
    row_of_code[codes[known]] = known
    return row_of_code


def trial_rows(trials: Trials, enroll_ids: list[str], test_ids: list[str] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Row of each trial's enroll id in ``enroll_ids`` and of its test id in ``test_ids`` (default:
    ``enroll_ids``); DataError naming the first trial that lacks an embedding."""
    enroll_row = rows_of_codes(trials, enroll_ids)
    test_row = enroll_row if test_ids is None else rows_of_codes(trials, test_ids)
    enroll_rows, test_rows = enroll_row[trials.enroll_codes], test_row[trials.test_codes]
    missing = np.flatnonzero((enroll_rows < 0) | (test_rows < 0))
    if missing.size:
        i = int(missing[0])
        side, code = ("enroll", trials.enroll_codes[i]) if enroll_rows[i] < 0 else ("test", trials.test_codes[i])
        more = f" ({missing.size} trials in all lack an embedding)" if missing.size > 1 else ""
        raise DataError(f"no embedding for {side} id '{trials.vocab.id_objects()[code]}'{more}", path=trials.path,
                        line=trials.line(i))
    return enroll_rows, test_rows


def utterance_counts(path: str | os.PathLike, ids: list[str]) -> np.ndarray:
    """Enrollment utterance count of each row of ``ids``, from Kaldi's ``num_utts.ark``
    (:func:`pyspeaker.store.kaldi_vectors.read_num_utts`); ids it does not list count 1."""
    from pyspeaker.store.kaldi_vectors import read_num_utts

    counts = read_num_utts(path)
    return np.array([counts.get(u, 1) for u in ids], dtype=np.float64)


def score_codes(trials: Trials, enroll_ids: list[str], enroll_emb: np.ndarray, *,
                test_ids: list[str] | None = None, test_emb: np.ndarray | None = None, backend=None,
                score_norm: str = "none", cohort: np.ndarray | None = None, top_n: int = 300,
                num_utts: np.ndarray | None = None, calibration=None, overwrite: bool = False) -> np.ndarray:
    """Scores of every trial in trial order (float32 for plain cosine, else float64).

    ``enroll_ids``/``enroll_emb`` hold the enroll embeddings (and the test ones too unless
    ``test_ids``/``test_emb`` are given); the back-end defaults to cosine without mean subtraction.
    A trial naming an id without an embedding raises DataError with the trials file and its line.
    ``overwrite``: the embedding matrices may be changed (a cosine back-end normalises them in
    place), for a caller that needs them for nothing else.
    """
    from pyspeaker.scoring.backend import CosineBackend, score_rows
    from pyspeaker.scoring.norm import score_norm_rows

    if (test_ids is None) != (test_emb is None):
        raise ValueError("give both test_ids and test_emb, or neither")
    backend = CosineBackend() if backend is None else backend
    enroll_rows, test_rows = trial_rows(trials, enroll_ids, test_ids)
    if test_emb is None:
        test_emb = enroll_emb
    scores = score_rows(backend, enroll_emb, enroll_rows, test_emb, test_rows, num_utts,
                        overwrite=overwrite and score_norm == "none")  # the norm reads them again
    if score_norm != "none":
        if cohort is None:
            raise DataError(f"{score_norm} needs a cohort (--cohort, or a back-end dir with cohort.h5)")
        scores = score_norm_rows(backend, scores, enroll_emb, enroll_rows, test_emb, test_rows, cohort, score_norm,
                                 top_n, num_utts)
    if calibration is not None:
        scores = calibration.apply(scores)
    return scores


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
