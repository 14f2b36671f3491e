"""Cosine scoring of trial lists, vectorised.

Each trial's enroll and test ids are turned into row indices once (a dict lookup), the embeddings
are mean-subtracted and L2-normalised once per side, and the scores come from the shared kernel
(:mod:`pyspeaker.scoring.kernel`: a matrix product for enroll x test grids, else row-wise dot
products of gathered rows in chunks, so that a million trials never materialise two [N, D] copies).
The ``pyspeaker score`` command uses :mod:`pyspeaker.scoring.backend`, which adds PLDA.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from pyspeaker.errors import DataError

# rows gathered per chunk (per side) are capped at about this many float32 values
_CHUNK_VALUES = 1 << 18
# a full enroll x test score matrix is used when it has at most this many entries (64 MiB)
_MATRIX_MAX_ENTRIES = 1 << 24


class TrialsLike(Protocol):
    enroll: Sequence[str]
    test: Sequence[str]
    path: object


def trial_line(trials: TrialsLike, index: int) -> int:
    """1-based line number of trial ``index`` in its file (``trials.lines`` if the reader kept it)."""
    for attr in ("lines", "line_numbers"):
        lines = getattr(trials, attr, None)
        if lines is not None and len(lines) == len(trials.enroll):
            return int(lines[index])
    return index + 1


def normalize_rows(matrix: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """float32 copy of ``matrix`` minus ``mean``, each row scaled to unit length (zero rows stay 0)."""
    out = np.array(matrix, dtype=np.float32, copy=True)
    if out.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D matrix, got shape {out.shape}")
    if mean is not None:
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        if mean.shape[0] != out.shape[1]:
            raise DataError(f"mean has dimension {mean.shape[0]} but embeddings have {out.shape[1]}")
        out -= mean
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.maximum(norms, np.finfo(np.float32).tiny)
    return out


def _rows(ids: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """Row index of each wanted id (-1 where missing)."""
    row = {u: i for i, u in enumerate(ids)}
    return np.fromiter((row.get(u, -1) for u in wanted), dtype=np.int64, count=len(wanted))


def _check_found(trials: TrialsLike, enroll_rows: np.ndarray, test_rows: np.ndarray) -> None:
    missing = np.flatnonzero((enroll_rows < 0) | (test_rows < 0))
    if missing.size == 0:
        return
    i = int(missing[0])
    side, uid = ("enroll", trials.enroll[i]) if enroll_rows[i] < 0 else ("test", trials.test[i])
    more = f" ({missing.size} trials in all lack an embedding)" if missing.size > 1 else ""
    raise DataError(f"no embedding for {side} id '{uid}'{more}", path=trials.path, line=trial_line(trials, i))


def score_trials(ids: Sequence[str], emb: np.ndarray, trials: TrialsLike, *, mean: np.ndarray | None = None,
                 test_ids: Sequence[str] | None = None, test_emb: np.ndarray | None = None) -> np.ndarray:
    """Cosine score of every trial, in trial order, as float32 [num_trials].

    ``ids``/``emb`` hold the enroll embeddings (and the test ones too unless ``test_ids``/``test_emb``
    are given). ``mean`` is subtracted from both sides before length normalisation. A trial naming
    an id without an embedding raises DataError with the trials file and its line.
    """
    if (test_ids is None) != (test_emb is None):
        raise ValueError("give both test_ids and test_emb, or neither")
    if len(ids) != len(emb):
        raise ValueError(f"{len(ids)} ids but {len(emb)} embeddings")
    enroll_rows = _rows(ids, trials.enroll)
    if test_ids is None:
        test_ids, test_emb = ids, emb
    elif len(test_ids) != len(test_emb):
        raise ValueError(f"{len(test_ids)} test ids but {len(test_emb)} test embeddings")
    test_rows = _rows(test_ids, trials.test)
    _check_found(trials, enroll_rows, test_rows)

    enroll_unit = normalize_rows(emb, mean)
    test_unit = enroll_unit if test_emb is emb else normalize_rows(test_emb, mean)
    if enroll_unit.shape[1] != test_unit.shape[1]:
        raise DataError(f"enroll embeddings have dimension {enroll_unit.shape[1]} "
                        f"but test embeddings have {test_unit.shape[1]}")
    return _cosine(enroll_unit, test_unit, enroll_rows, test_rows)


def _cosine(enroll_unit: np.ndarray, test_unit: np.ndarray, enroll_rows: np.ndarray,
            test_rows: np.ndarray) -> np.ndarray:
    from pyspeaker.scoring.kernel import pair_scores

    return pair_scores(enroll_unit, test_unit, enroll_rows, test_rows, matrix_max_entries=_MATRIX_MAX_ENTRIES,
                       chunk_values=_CHUNK_VALUES)
