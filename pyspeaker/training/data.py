"""Training examples: random fixed-length crops of stored features, labelled by speaker."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pyspeaker.errors import DataError
from pyspeaker.store.features import FeatureStore


def read_utt2spk(path: Path) -> dict[str, str]:
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"expected '<utt> <spk>', got {line!r}", path=path, line=n)
        out[parts[0]] = parts[1]
    return out


def crop_frames(feats: np.ndarray, length: int, start: int) -> np.ndarray:
    """``length`` frames from ``start``; shorter utterances are wrapped around (repeated) first."""
    if feats.shape[0] < length:
        feats = np.pad(feats, ((0, length - feats.shape[0]), (0, 0)), mode="wrap")
    return feats[start:start + length]


class CropDataset(torch.utils.data.Dataset):
    """Item ``i`` = (random crop of utterance i, speaker label); crops are seeded by (seed, epoch, i)."""

    def __init__(self, store: FeatureStore, utt2spk: dict[str, str], crop: int, seed: int = 0):
        missing = [u for u in store.ids if u not in utt2spk]
        if missing:
            raise DataError(f"{len(missing)} utterances of the store have no speaker (first: {missing[0]})",
                            path=store.dir / "utt2spk")
        self.store = store
        self.speakers = sorted({utt2spk[u] for u in store.ids})
        spk_index = {s: i for i, s in enumerate(self.speakers)}
        self.labels = np.array([spk_index[utt2spk[u]] for u in store.ids], dtype=np.int64)
        self.crop = crop
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int):
        n = int(self.store.lengths[i])
        rng = np.random.default_rng((self.seed, self.epoch, i))
        start = int(rng.integers(0, max(n - self.crop, 0) + 1))
        if n >= self.crop:
            feats = self.store.read(i, start, self.crop)
        else:
            feats = crop_frames(self.store.read(i), self.crop, 0)
        return torch.from_numpy(np.ascontiguousarray(feats)), int(self.labels[i])


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The seeded shuffle of one epoch: the same (seed, epoch) always gives the same order."""
    return np.random.default_rng((seed, epoch, 0x5EED)).permutation(n).tolist()
