"""The scoring kernel shared by every back-end: ``score[k] = A[a[k]] . B[b[k]] + bias_a[a[k]] + bias_b[b[k]]``.

Cosine scoring is that form with unit-length rows and no biases; Kaldi's PLDA log-likelihood ratio
is that form too after a per-side transform (see :mod:`pyspeaker.scoring.plda`). The kernel picks
one of three strategies by the shape of the problem:

- few distinct rows per side and many trials (an enroll x test grid, as in NIST SRE lists): one
  BLAS matrix product of the used rows, then a gather of the wanted entries;
- a long list (``>= SDDMM_MIN_TRIALS``) in a process that has already imported torch: torch's
  sampled dense-dense product over a CSR pattern (one vectorised dot per trial in C++, nothing
  copied per trial). torch is never imported just for this: the import alone takes seconds;
- otherwise chunks of gathered rows in preallocated cache-sized buffers, multiplied row by row
  (``np.vecdot``), long lists split over a few threads (numpy releases the GIL there).

All three give the same numbers up to float rounding.
"""
from __future__ import annotations

import os
import sys

import numpy as np

# a full |A_used| x |B_used| product is used when it has at most this many entries (64 MiB of float32) ...
MATRIX_MAX_ENTRIES = 1 << 24
# ... and at most this many entries per trial: one BLAS product then beats gathering D values per trial
MATRIX_MAX_PER_TRIAL = 8
# rows gathered per chunk (per side) are capped at about this many values (1 MiB of float32)
CHUNK_VALUES = 1 << 18
# torch's sampled matrix product (only if torch is already imported) for lists at least this long
SDDMM_MIN_TRIALS = 200_000
# the gather path uses one thread per this many trials (up to default_threads())
THREAD_MIN_TRIALS = 50_000


def distinct_rows(index: np.ndarray, size: int, *more: np.ndarray) -> np.ndarray:
    """The distinct values of ``index`` (and of the ``more`` index arrays), ascending: O(n + size)
    with a mask instead of a sort (np.unique sorts: ~1 s for 10 million)."""
    mask = np.zeros(size, dtype=bool)
    for idx in (index, *more):
        mask[idx] = True
    return np.flatnonzero(mask)


def renumbered(used: np.ndarray, size: int, *indices: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each index array renumbered into ``used`` (ascending distinct rows); as is when every row is used."""
    if used.size == size:
        return indices
    remap = np.zeros(size, dtype=np.int64)
    remap[used] = np.arange(used.size)
    return tuple(remap[idx] for idx in indices)


def used_rows(index: np.ndarray, size: int, *more: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(used, local, *more_local)``: :func:`distinct_rows` and each index array renumbered into them."""
    used = distinct_rows(index, size, *more)
    return (used, *renumbered(used, size, index, *more))


def pair_scores(a: np.ndarray, b: np.ndarray, a_rows: np.ndarray, b_rows: np.ndarray,
                a_bias: np.ndarray | None = None, b_bias: np.ndarray | None = None, *,
                matrix_max_entries: int | None = None, chunk_values: int | None = None,
                sddmm_min_trials: int | None = None) -> np.ndarray:
    """``a[a_rows[k]] . b[b_rows[k]] (+ a_bias[a_rows[k]] + b_bias[b_rows[k]])`` for every k.

    ``a`` and ``b`` are 2-D with the same number of columns and the same float dtype; the result has
    that dtype (biases are added in float64 and rounded once). Row indices must be valid.
    """
    matrix_max_entries = MATRIX_MAX_ENTRIES if matrix_max_entries is None else matrix_max_entries
    chunk_values = CHUNK_VALUES if chunk_values is None else chunk_values
    sddmm_min_trials = SDDMM_MIN_TRIALS if sddmm_min_trials is None else sddmm_min_trials
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sides have dimensions {a.shape[1]} and {b.shape[1]}")
    dtype = np.result_type(a.dtype, b.dtype)
    n = len(a_rows)
    if n == 0:
        return np.empty(0, dtype=dtype)
    a_rows = np.asarray(a_rows, dtype=np.int64)
    b_rows = np.asarray(b_rows, dtype=np.int64)
    a_used, b_used = distinct_rows(a_rows, len(a)), distinct_rows(b_rows, len(b))
    if a_used.size * b_used.size <= min(matrix_max_entries, MATRIX_MAX_PER_TRIAL * n):
        product = np.asarray(a[a_used], dtype=dtype) @ np.asarray(b[b_used], dtype=dtype).T
        scores = product[renumbered(a_used, len(a), a_rows)[0], renumbered(b_used, len(b), b_rows)[0]]
    else:
        a_sub, a_idx = _subset(a, a_used, a_rows, dtype)
        b_sub, b_idx = _subset(b, b_used, b_rows, dtype)
        if n >= sddmm_min_trials and "torch" in sys.modules:
            scores = _sddmm(a_sub, b_sub, a_idx, b_idx)
        else:
            scores = _gathered(a_sub, b_sub, a_idx, b_idx, chunk_values)
    if a_bias is None and b_bias is None:
        return scores
    total = scores.astype(np.float64)
    if a_bias is not None:
        total += np.asarray(a_bias, dtype=np.float64)[a_rows]
    if b_bias is not None:
        total += np.asarray(b_bias, dtype=np.float64)[b_rows]
    return total.astype(dtype, copy=False)


def _subset(m: np.ndarray, used: np.ndarray, rows: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The matrix to gather from and the indices into it: the used rows only when they are a small
    part of ``m`` (less memory to touch), else ``m`` itself (copying 100 MB costs more than it saves)."""
    if used.size * 2 < len(m):
        return np.ascontiguousarray(m[used], dtype=dtype), renumbered(used, len(m), rows)[0]
    return np.ascontiguousarray(m, dtype=dtype), rows


def matrix_scores(a: np.ndarray, b: np.ndarray, a_bias: np.ndarray | None = None,
                  b_bias: np.ndarray | None = None) -> np.ndarray:
    """All pairs: ``a @ b.T`` plus the row biases of each side (float64 when there are biases)."""
    out = a @ b.T
    if a_bias is None and b_bias is None:
        return out
    out = out.astype(np.float64)
    if a_bias is not None:
        out += np.asarray(a_bias, dtype=np.float64)[:, None]
    if b_bias is not None:
        out += np.asarray(b_bias, dtype=np.float64)[None, :]
    return out


def default_threads() -> int:
    """Threads for the gather path: ``PYSPEAKER_THREADS``, else the CPUs this process may use (max 8)."""
    value = os.environ.get("PYSPEAKER_THREADS")
    if value:
        return max(1, int(value))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _gathered(a: np.ndarray, b: np.ndarray, a_rows: np.ndarray, b_rows: np.ndarray, chunk_values: int,
              threads: int | None = None) -> np.ndarray:
    """Row-wise dots of gathered rows; long lists are split over threads (np.take and matmul release
    the GIL, and the random row reads are memory-latency bound, so two threads nearly double it)."""
    n = len(a_rows)
    threads = default_threads() if threads is None else threads
    parts = min(threads, n // THREAD_MIN_TRIALS)
    if parts <= 1:
        return _gathered_part(a, b, a_rows, b_rows, chunk_values)
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, n, parts + 1).astype(np.int64)
    out = np.empty(n, dtype=a.dtype)

    def run(k: int) -> None:
        lo, hi = bounds[k], bounds[k + 1]
        out[lo:hi] = _gathered_part(a, b, a_rows[lo:hi], b_rows[lo:hi], chunk_values)

    with ThreadPoolExecutor(parts) as pool:
        list(pool.map(run, range(parts)))
    return out


def _gathered_part(a: np.ndarray, b: np.ndarray, a_rows: np.ndarray, b_rows: np.ndarray,
                   chunk_values: int) -> np.ndarray:
    n, dim = len(a_rows), a.shape[1]
    chunk = max(1, min(n, chunk_values // max(1, dim)))
    out = np.empty(n, dtype=a.dtype)
    # preallocated buffers: a fresh 1 MiB array per chunk costs page faults that outweigh the work
    buf_a = np.empty((chunk, dim), dtype=a.dtype)
    buf_b = np.empty((chunk, dim), dtype=a.dtype)
    buf_runs = np.empty((chunk, dim), dtype=a.dtype)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        m = stop - start
        x, y = buf_a[:m], buf_b[:m]
        rows = a_rows[start:stop]
        new_run = rows[1:] != rows[:-1]
        runs = 1 + int(np.count_nonzero(new_run))
        # mode="clip": the rows are valid, and the default mode="raise" buffers `out` (2x slower)
        if runs * 2 <= m:
            # trials grouped by enroll (VoxCeleb lists: ~10 per enroll utterance): read each enroll row
            # once from the big matrix, then copy it along its run from the cache-resident buffer
            firsts = np.concatenate(([0], np.flatnonzero(new_run) + 1))
            np.take(a, rows[firsts], axis=0, out=buf_runs[:runs], mode="clip")
            run_of = np.concatenate(([0], np.cumsum(new_run)))
            np.take(buf_runs[:runs], run_of, axis=0, out=x, mode="clip")
        else:
            np.take(a, rows, axis=0, out=x, mode="clip")
        np.take(b, b_rows[start:stop], axis=0, out=y, mode="clip")
        np.vecdot(x, y, out=out[start:stop])  # faster than einsum("ij,ij->i") and batched matmul
    return out


def _sddmm(a: np.ndarray, b: np.ndarray, a_rows: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    """Sampled product over the CSR pattern of the trials (rows: a side, columns: b side)."""
    import warnings

    import torch

    n = len(a_rows)
    # CSR needs the trials grouped by a-row; lists grouped by enroll id already are (no sort then)
    order = None if np.all(a_rows[1:] >= a_rows[:-1]) else np.argsort(a_rows, kind="stable")
    rows = a_rows if order is None else a_rows[order]
    cols = b_rows if order is None else b_rows[order]
    crow = np.searchsorted(rows, np.arange(len(a) + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        pattern = torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(cols),
                                          torch.zeros(n, dtype=torch.from_numpy(a[:0]).dtype),
                                          size=(len(a), len(b)), check_invariants=False)
        values = torch.sparse.sampled_addmm(pattern, torch.from_numpy(a), torch.from_numpy(b).T,
                                            beta=0.0).values().numpy()
    if order is None:
        return values
    out = np.empty(n, dtype=values.dtype)
    out[order] = values
    return out
