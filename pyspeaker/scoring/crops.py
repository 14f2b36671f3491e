"""voxceleb_trainer's evaluation score from per-crop embeddings.

Each utterance has K crop embeddings; a trial's score is minus the mean of the K x K Euclidean
distances between the crops of its two sides, L2-normalised first unless the loss says otherwise
(voxceleb_trainer's ``test_normalize``; for unit vectors each distance is sqrt(2 - 2 cos)). It is
computed in chunks of trials with the same float32 operations as voxceleb_trainer's per-trial
loop (``F.normalize``, ``torch.cdist``, ``numpy.mean``), so the scores are the same, bit for bit.
"""
from __future__ import annotations

import numpy as np


def crop_scores(enroll: np.ndarray, enroll_rows: np.ndarray, test: np.ndarray, test_rows: np.ndarray,
                normalize: bool = True, chunk: int = 4096) -> np.ndarray:
    """float32 scores of trials (enroll[enroll_rows[i]], test[test_rows[i]]) from crops [N, K, D]."""
    import torch
    import torch.nn.functional as F

    def rows(crops: np.ndarray) -> np.ndarray:
        crops = np.ascontiguousarray(crops)
        return F.normalize(torch.from_numpy(crops), p=2, dim=2).numpy() if normalize else crops

    e_all = rows(enroll)
    t_all = e_all if test is enroll else rows(test)
    enroll_rows, test_rows = np.asarray(enroll_rows, dtype=np.int64), np.asarray(test_rows, dtype=np.int64)
    out = np.empty(len(enroll_rows), dtype=np.float32)
    for lo in range(0, len(enroll_rows), chunk):
        # numpy's take gathers the trials' rows several times faster than torch's indexing
        e = torch.from_numpy(np.take(e_all, enroll_rows[lo:lo + chunk], axis=0))
        t = torch.from_numpy(np.take(t_all, test_rows[lo:lo + chunk], axis=0))
        dist = torch.cdist(e, t).numpy()
        out[lo:lo + chunk] = -1 * np.mean(dist.reshape(dist.shape[0], -1), axis=1)
    return out
