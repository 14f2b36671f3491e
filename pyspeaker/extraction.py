"""Embedding extraction from a feature store, deterministic whatever the batching.

Two modes:
- whole utterance (default): one vector per utterance, no crop, no dither. Utterances are batched
  only with others of the same length and nothing is ever padded, so an embedding does not depend
  on the batch size or on the other utterances in its batch.
- voxceleb_trainer's evaluation (``eval_frames`` F, ``num_eval`` K): K evenly spaced crops of F
  frames per utterance (an utterance shorter than F is first repeated to F frames, as its wrap
  padding), embedded as one batch. The crops [N, K, D] are kept for its scoring (-mean distance of
  the normalised rows); the utterance vector is the mean of the L2-normalised crop embeddings.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from pyspeaker.store.features import FeatureStore
from pyspeaker.training.data import crop_frames


def crop_starts(num_frames: int, eval_frames: int, num_eval: int) -> np.ndarray:
    """voxceleb_trainer's crop starts: int(linspace(0, len - crop, K)) on the (padded) utterance."""
    return np.linspace(0, max(num_frames, eval_frames) - eval_frames, num=num_eval).astype(np.int64)


def eval_crops(feats: np.ndarray, eval_frames: int, num_eval: int) -> np.ndarray:
    """[K, eval_frames, dim] crops of one utterance."""
    padded = crop_frames(feats, max(eval_frames, feats.shape[0]), 0)
    return np.stack([padded[s:s + eval_frames] for s in crop_starts(feats.shape[0], eval_frames, num_eval)])


@torch.no_grad()
def extract_store(model: torch.nn.Module, store: FeatureStore, device: torch.device | str = "cpu",
                  max_batch_frames: int = 20000, progress: bool | None = None, eval_frames: int | None = None,
                  num_eval: int = 10, utts: list[int] | None = None):
    """Embed utterances of ``store`` (all, or the indices ``utts``).

    Returns (ids, matrix [N, D]) in whole-utterance mode, (ids, matrix, crops [N, K, D]) in crop mode.
    """
    from tqdm import tqdm

    model = model.to(device).eval()
    index = list(range(len(store))) if utts is None else list(utts)
    bar = tqdm(total=len(index), desc="embeddings", unit="utt", disable=True if progress is False else None,
               leave=False, dynamic_ncols=True)
    ids = [store.ids[i] for i in index]
    if eval_frames:
        crops = None
        for n, i in enumerate(index):
            x = torch.from_numpy(eval_crops(store.read(i), eval_frames, num_eval)).to(device)
            emb = model(x).float().cpu().numpy()
            if crops is None:
                crops = np.empty((len(index), num_eval, emb.shape[1]), dtype=np.float32)
            crops[n] = emb
            bar.update(1)
        bar.close()
        normed = crops / np.maximum(np.linalg.norm(crops, axis=2, keepdims=True), 1e-12)
        return ids, normed.mean(axis=1).astype(np.float32), crops
    by_length: dict[int, list[int]] = defaultdict(list)
    for n, i in enumerate(index):
        by_length[int(store.lengths[i])].append(n)
    out: np.ndarray | None = None
    for length, rows in sorted(by_length.items()):
        step = max(1, max_batch_frames // max(length, 1))
        for k in range(0, len(rows), step):
            chunk = rows[k:k + step]
            feats = torch.from_numpy(np.stack([store.read(index[r]) for r in chunk])).to(device)
            emb = model(feats).float().cpu().numpy()
            if out is None:
                out = np.empty((len(index), emb.shape[1]), dtype=np.float32)
            out[chunk] = emb
            bar.update(len(chunk))
    bar.close()
    return ids, out


def feature_statistics(store: FeatureStore) -> np.ndarray:
    """The non-neural baseline's utterance vectors: per-utterance mean and standard deviation of
    the features over frames, [N, 2 * dim] float32 (float64 sums, so long utterances lose nothing)."""
    dim = int(store.dim)
    out = np.empty((len(store), 2 * dim), dtype=np.float32)
    for i in range(len(store)):
        x = store.read(i).astype(np.float64)
        out[i, :dim] = x.mean(axis=0)
        out[i, dim:] = x.std(axis=0)
    return out
