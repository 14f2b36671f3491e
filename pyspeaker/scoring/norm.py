"""Score normalisation against a cohort: S-norm and adaptive S-norm (AS-norm), as WeSpeaker's recipe.

For each enroll embedding ``e`` the cohort scores ``s(e, c)`` over the cohort ``C`` (speaker-mean
embeddings of a training set) give a mean ``mu_e`` and a standard deviation ``sigma_e`` (numpy's
``std``, ``ddof=0``); likewise ``mu_t``, ``sigma_t`` for each test embedding. AS-norm uses only the
``top_n`` highest cohort scores of each embedding, S-norm all of them. A trial's score becomes::

    s' = ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t) / 2

Cohort scores use the same back-end as the trials (for cosine with mean subtraction that is
exactly WeSpeaker's ``wespeaker/bin/score_norm.py``). PLDA is not symmetric: the enroll statistics
score the enroll embedding against the cohort as test side, the test statistics the cohort as
enroll side against the test embedding. Statistics are computed only for the embeddings the
trials use, a block of rows at a time, with a partial sort (``np.partition``) for the top N.

The standard deviations are the scale, so a cohort of one speaker, ``top_n`` 1, or cohort
scores that are all equal (a cohort of copies of one embedding) are refused: they would divide
by zero.
"""
from __future__ import annotations

import numpy as np

from pyspeaker.errors import ConfigError, DataError
from pyspeaker.scoring.kernel import matrix_scores, used_rows

NORMS = ("none", "snorm", "asnorm")
# cohort score entries per block (float64: 128 MiB)
_BLOCK_ENTRIES = 1 << 24
# a spread this small relative to the mean is rounding noise of equal scores, not a spread
_FLAT = 1e-9


def _flat(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return std <= _FLAT * np.abs(mean)


def top_n_stats(scores: np.ndarray, top_n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof 0) over each row's ``top_n`` largest values (all of them when None or
    >= the row length)."""
    scores = np.asarray(scores, dtype=np.float64)
    width = scores.shape[1]
    if top_n is not None and 0 < top_n < width:
        scores = np.partition(scores, width - top_n, axis=1)[:, width - top_n:]
    return scores.mean(axis=1), scores.std(axis=1)


def cohort_stats(side_matrix: np.ndarray, side_bias: np.ndarray | None, cohort_matrix: np.ndarray,
                 cohort_bias: np.ndarray | None, top_n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` of each side row's cohort scores ``side[i] . cohort[c] + biases``."""
    n, size = len(side_matrix), len(cohort_matrix)
    means, stds = np.empty(n), np.empty(n)
    block = max(1, _BLOCK_ENTRIES // max(1, size))
    for start in range(0, n, block):
        stop = min(n, start + block)
        s = matrix_scores(side_matrix[start:stop], cohort_matrix,
                          None if side_bias is None else side_bias[start:stop], cohort_bias)
        means[start:stop], stds[start:stop] = top_n_stats(s, top_n)
    return means, stds


def normalize(scores: np.ndarray, enroll_mean: np.ndarray, enroll_std: np.ndarray, test_mean: np.ndarray,
              test_std: np.ndarray) -> np.ndarray:
    """``((s - mu_e) / sigma_e + (s - mu_t) / sigma_t) / 2`` element-wise (float64 in, float64 out).

    DataError where a standard deviation has zero spread: dividing by it gives inf or nonsense."""
    for mean, std in ((enroll_mean, enroll_std), (test_mean, test_std)):
        if np.any(_flat(np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64))):
            raise DataError("score normalisation: cohort scores with zero spread (all equal) cannot scale a score")
    s = np.asarray(scores, dtype=np.float64)
    return 0.5 * ((s - enroll_mean) / enroll_std + (s - test_mean) / test_std)


def _check_spread(method: str, side: str, rows: np.ndarray, mean: np.ndarray, std: np.ndarray,
                  cohort_size: int) -> None:
    flat = _flat(mean, std)
    if flat.any():
        n, first = int(flat.sum()), int(rows[int(np.argmax(flat))])
        raise DataError(f"{method}: the cohort scores of {n} {side} embedding{'' if n == 1 else 's'} (first: row "
                        f"{first}) have zero spread (all equal): the cohort's {cohort_size} embeddings score alike; "
                        "use a cohort of different speakers")


def score_norm_rows(backend, scores: np.ndarray, enroll: np.ndarray, enroll_rows: np.ndarray, test: np.ndarray,
                    test_rows: np.ndarray, cohort: np.ndarray, method: str, top_n: int = 300,
                    num_utts: np.ndarray | None = None) -> np.ndarray:
    """Normalise trial ``scores`` (``enroll[enroll_rows[k]]`` vs ``test[test_rows[k]]``) with ``method``
    (``snorm`` or ``asnorm`` with ``top_n``) against the ``cohort`` embeddings, scored by ``backend``."""
    if method == "none":
        return np.asarray(scores)
    if method not in NORMS:
        raise ValueError(f"unknown score normalisation '{method}' (expected one of {', '.join(NORMS)})")
    if len(cohort) < 2:
        raise DataError(f"{method} with a cohort of {len(cohort)} speaker{'' if len(cohort) == 1 else 's'}: "
                        "score normalisation needs at least 2 (their scores' spread is the scale)")
    n_top = None if method == "snorm" else int(top_n)
    if n_top is not None and n_top < 2:
        raise ConfigError(f"asnorm needs --top-n of at least 2, got {n_top} (the spread of its top scores is the "
                          "scale)")
    e_used, e_local = used_rows(np.asarray(enroll_rows, dtype=np.int64), len(enroll))
    t_used, t_local = used_rows(np.asarray(test_rows, dtype=np.int64), len(test))
    counts = None if num_utts is None else np.asarray(num_utts)[e_used]
    # enroll side against the cohort as test side
    e_side, c_test = backend.sides(enroll[e_used], cohort, counts)
    e_mean, e_std = cohort_stats(e_side.matrix, e_side.bias, c_test.matrix, c_test.bias, n_top)
    _check_spread(method, "enroll", e_used, e_mean, e_std, len(cohort))
    # the cohort as enroll side against the test side
    c_enroll, t_side = backend.sides(cohort, test[t_used], None)
    t_mean, t_std = cohort_stats(t_side.matrix, t_side.bias, c_enroll.matrix, c_enroll.bias, n_top)
    _check_spread(method, "test", t_used, t_mean, t_std, len(cohort))
    return normalize(scores, e_mean[e_local], e_std[e_local], t_mean[t_local], t_std[t_local])
