"""Embedding extraction: one vector per utterance from the whole utterance (no crop, no dither).

Utterances of equal length are batched together and nothing is ever padded, so an utterance's
embedding does not depend on the batch size or on the other utterances in its batch.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from pyspeaker.store.features import FeatureStore


@torch.no_grad()
def extract_store(model: torch.nn.Module, store: FeatureStore, device: torch.device | str = "cpu",
                  max_batch_frames: int = 20000, progress: bool | None = None) -> tuple[list[str], np.ndarray]:
    """Embed every utterance of ``store``; returns (ids in store order, float32 matrix)."""
    from tqdm import tqdm

    model = model.to(device).eval()
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(store.lengths):
        by_length[int(n)].append(i)
    out: np.ndarray | None = None
    bar = tqdm(total=len(store), desc="embeddings", unit="utt", disable=True if progress is False else None,
               leave=False, dynamic_ncols=True)
    for length, idx in sorted(by_length.items()):
        step = max(1, max_batch_frames // max(length, 1))
        for k in range(0, len(idx), step):
            chunk = idx[k:k + step]
            feats = torch.from_numpy(np.stack([store.read(i) for i in chunk])).to(device)
            emb = model(feats).float().cpu().numpy()
            if out is None:
                out = np.empty((len(store), emb.shape[1]), dtype=np.float32)
            out[chunk] = emb
            bar.update(len(chunk))
    bar.close()
    return list(store.ids), out
