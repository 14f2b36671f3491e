"""voxceleb_trainer's evaluation score from per-crop embeddings.

Each utterance has K crop embeddings; a trial's score is minus the mean of the K x K Euclidean
distances between the L2-normalised crops of its two sides (for unit vectors the distance is
sqrt(2 - 2 cos)). Vectorised over trials in chunks to bound memory.
"""
from __future__ import annotations

import numpy as np


def crop_scores(enroll: np.ndarray, enroll_rows: np.ndarray, test: np.ndarray, test_rows: np.ndarray,
                normalize: bool = True, chunk: int = 4096) -> np.ndarray:
    """Scores of trials (enroll[enroll_rows[i]], test[test_rows[i]]) from crops [N, K, D]."""
    if normalize:
        enroll = enroll / np.maximum(np.linalg.norm(enroll, axis=2, keepdims=True), 1e-12)
        test = test / np.maximum(np.linalg.norm(test, axis=2, keepdims=True), 1e-12)
    e_sq = np.einsum("nkd,nkd->nk", enroll, enroll)
    t_sq = np.einsum("nkd,nkd->nk", test, test)
    out = np.empty(len(enroll_rows), dtype=np.float32)
    for lo in range(0, len(enroll_rows), chunk):
        e, t = enroll_rows[lo:lo + chunk], test_rows[lo:lo + chunk]
        dots = np.einsum("nkd,nld->nkl", enroll[e], test[t])
        sq = e_sq[e][:, :, None] + t_sq[t][:, None, :] - 2 * dots
        out[lo:lo + chunk] = -np.sqrt(np.clip(sq, 0, None)).mean(axis=(1, 2))
    return out
