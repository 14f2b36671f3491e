"""Embedding extraction, deterministic whatever the batching, and the crop and batching rules it uses.

Two modes:
- whole utterance (default): one vector per utterance, no crop, no dither. Utterances are batched
  only with others of the same length and nothing is ever padded (:func:`embed_by_length`, also
  used by validation during training), so an embedding does not depend on the batch size or on
  the other utterances in its batch.
- voxceleb_trainer's evaluation (``eval_frames`` F, ``num_eval`` K): K evenly spaced crops of F
  frames per utterance (an utterance shorter than F is first repeated to F frames, as its wrap
  padding), embedded as one batch (:func:`embed_each`, also used by ``voxceleb-eval`` on
  waveform crops). The crops [N, K, D] are kept for its scoring
  (:func:`pyspeaker.scoring.crops.crop_scores`); the utterance vector is the mean of the
  L2-normalised crop embeddings.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from pyspeaker.store.features import FeatureStore


def crop_starts(length: int, crop: int, num_eval: int) -> np.ndarray:
    """voxceleb_trainer's crop starts: int(linspace(0, len - crop, K)) on the (padded) input."""
    return np.linspace(0, max(length, crop) - crop, num=num_eval).astype(np.int64)


def eval_crops(x: np.ndarray, crop: int, num_eval: int, min_length: int | None = None) -> np.ndarray:
    """[K, crop, ...] evenly spaced crops of ``x`` along its first axis (frames or samples).

    ``x`` shorter than ``min_length`` (default: ``crop``) is first extended to it by repeating it
    from its start; the crops start at :func:`crop_starts` of the extended length.
    """
    target = max(crop if min_length is None else min_length, len(x))
    if len(x) < target:
        x = np.pad(x, [(0, target - len(x))] + [(0, 0)] * (x.ndim - 1), mode="wrap")
    return np.stack([x[s:s + crop] for s in crop_starts(len(x), crop, num_eval)])


def length_batches(lengths: Sequence[int], max_batch_frames: int) -> Iterator[list[int]]:
    """Positions of ``lengths`` grouped by equal length (shortest first, positions ascending), in
    batches of at most ``max(1, max_batch_frames // length)``."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for k, length in enumerate(lengths):
        by_length[int(length)].append(k)
    for length, ks in sorted(by_length.items()):
        step = max(1, max_batch_frames // max(length, 1))
        for j in range(0, len(ks), step):
            yield ks[j:j + step]


@torch.no_grad()
def embed_by_length(model: torch.nn.Module, read: Callable[[int], np.ndarray], lengths: Sequence[int],
                    device: torch.device | str = "cpu", max_batch_frames: int = 20000,
                    on_batch: Callable[[int], object] | None = None) -> np.ndarray | None:
    """Embeddings [N, D] (float32) of N whole inputs, ``read(k)`` giving the k-th (``lengths[k]``
    frames), batched by :func:`length_batches`: never padded, so independent of the batching.
    ``on_batch(n)`` is called after each batch of n. None when N is 0."""
    out: np.ndarray | None = None
    for chunk in length_batches(lengths, max_batch_frames):
        emb = model(torch.from_numpy(np.stack([read(k) for k in chunk])).to(device)).float().cpu().numpy()
        if out is None:
            out = np.empty((len(lengths), emb.shape[1]), dtype=np.float32)
        out[chunk] = emb
        if on_batch is not None:
            on_batch(len(chunk))
    return out


@torch.no_grad()
def embed_each(model: torch.nn.Module, inputs: Iterable[np.ndarray], total: int,
               device: torch.device | str = "cpu") -> np.ndarray | None:
    """[total, K, D] (float32): each of ``inputs`` (e.g. one utterance's K crops) through ``model``
    as one batch. None when there are no inputs."""
    out: np.ndarray | None = None
    for n, x in enumerate(inputs):
        emb = model(torch.from_numpy(x).to(device)).float().cpu().numpy()
        if out is None:
            out = np.empty((total,) + emb.shape, dtype=np.float32)
        out[n] = emb
    return out


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
        def crops_of(i: int) -> np.ndarray:
            bar.update(1)
            return eval_crops(store.read(i), eval_frames, num_eval)

        crops = embed_each(model, map(crops_of, index), len(index), device)
        bar.close()
        normed = crops / np.maximum(np.linalg.norm(crops, axis=2, keepdims=True), 1e-12)
        return ids, normed.mean(axis=1).astype(np.float32), crops
    out = embed_by_length(model, lambda k: store.read(index[k]), [store.lengths[i] for i in index], device,
                          max_batch_frames, on_batch=bar.update)
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
