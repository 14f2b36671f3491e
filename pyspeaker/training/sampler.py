"""Batches of speakers: ``nPerSpeaker`` utterances of each, no speaker twice, sharded over processes.

One epoch's batches are a pure function of (seed, epoch), so every process of a distributed run
draws the same list and takes its own share, and a resumed run repeats the interrupted epoch.

How an epoch is drawn:

1. each speaker's utterances are shuffled, cut to ``max_seg_per_spk`` (0 = all) and split into
   groups of ``nPerSpeaker`` (a remainder smaller than a group is left out this epoch);
2. a speaker's k groups get positions spread evenly over the epoch (group j at a random point in
   [j/k, (j+1)/k)), and the groups are sorted by position -- speakers with many utterances are
   spread out instead of clustering, so batches of distinct speakers rarely collide;
3. batches are filled in that order; a group whose speaker is already in the current batch waits
   and goes into the next batch that has room for it. Groups left over at the end (fewer than a
   batch) are dropped, so every batch has exactly ``batch_size`` speakers;
4. with ``world_size`` processes the batch list is cut to a multiple of ``world_size`` and process
   r takes batches r, r + world_size, ...: disjoint data, the same number of steps everywhere.

Unlike voxceleb_trainer's greedy pass, which discards every group that collides (most of them
on a small corpus), this keeps nearly all the data, and it refuses impossible settings up front
instead of building zero batches (see :func:`plan_batches`, and :func:`min_batches` for the
number of batches every epoch is guaranteed).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from pyspeaker.errors import ConfigError
from pyspeaker.log import get_logger

log = get_logger(__name__)


@dataclass
class BatchPlan:
    """What :func:`plan_batches` decided: the batch size to use and what the data allow."""

    batch_size: int           # speakers per batch (per process)
    usable_speakers: int      # speakers with at least nPerSpeaker utterances
    batches_per_epoch: int    # per process (an estimate for epochs other than the first)


def _groups_per_speaker(labels: np.ndarray, n_per_speaker: int, max_seg_per_spk: int) -> np.ndarray:
    """How many groups of ``n_per_speaker`` each speaker gives in every epoch (step 1 above)."""
    counts = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    if max_seg_per_spk > 0:
        counts = np.minimum(counts, max_seg_per_spk)
    return counts // n_per_speaker


def min_batches(labels, batch_size: int, n_per_speaker: int, max_seg_per_spk: int, unique: bool) -> int:
    """The fewest batches (before sharding) that any epoch can have.

    Every epoch has the same groups per speaker; only their order changes. Without ``unique``
    that is ``groups // batch_size`` batches every time. With it, :func:`fill_batches` keeps
    this invariant: every waiting group's speaker is in the batch being filled (a group waits
    only when its speaker is there; when a batch completes, the waiting groups -- of at most
    batch_size - 1 speakers -- are retried in a fresh batch, where they cannot complete one, and
    those that wait again collide with it). So the groups left at the end belong to at most
    batch_size - 1 speakers, which gives two bounds: the batches hold every group but at most
    those of the batch_size - 1 largest speakers, and every other speaker has all its groups in
    batches, one per batch, so there are at least as many batches as the batch_size-th largest
    speaker has groups.
    """
    k = _groups_per_speaker(np.asarray(labels, dtype=np.int64), int(n_per_speaker), int(max_seg_per_spk))
    total = int(k.sum())
    if not unique:
        return total // batch_size
    k = np.sort(k)[::-1]
    left_at_most = int(k[:batch_size - 1].sum())
    all_placed = int(k[batch_size - 1]) if len(k) >= batch_size else 0
    return max(0, -(-(total - left_at_most) // batch_size), all_placed)


def speaker_groups(labels: np.ndarray, n_per_speaker: int, max_seg_per_spk: int,
                   rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Shuffled groups of ``n_per_speaker`` utterance indices and the speaker of each group."""
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    groups, speakers = [], []
    for utts in np.split(order, bounds):
        if len(utts) == 0:
            continue
        utts = rng.permutation(utts)
        if max_seg_per_spk > 0:
            utts = utts[:max_seg_per_spk]
        k = len(utts) // n_per_speaker
        if k:
            groups.append(utts[:k * n_per_speaker].reshape(k, n_per_speaker))
            speakers.append(np.full(k, labels[utts[0]]))
    if not groups:
        return [], np.zeros(0, dtype=np.int64)
    return list(np.concatenate(groups)), np.concatenate(speakers)


def spread_order(speakers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Group order with each speaker's groups spread evenly over the epoch (step 2 above)."""
    if len(speakers) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(speakers, kind="stable")
    spk_sorted = speakers[order]
    starts = np.r_[0, np.flatnonzero(np.diff(spk_sorted)) + 1]
    counts = np.diff(np.r_[starts, len(spk_sorted)])
    rank_in_speaker = np.arange(len(spk_sorted)) - np.repeat(starts, counts)
    position = np.empty(len(speakers))
    position[order] = (rank_in_speaker + rng.random(len(speakers))) / np.repeat(counts, counts)
    return np.argsort(position, kind="stable")


def fill_batches(order: np.ndarray, speakers: np.ndarray, batch_size: int, unique: bool) -> list[list[int]]:
    """Group indices in batches of ``batch_size``; with ``unique`` no speaker twice in a batch."""
    if not unique:
        full = len(order) // batch_size * batch_size
        return [order[i:i + batch_size].tolist() for i in range(0, full, batch_size)]
    batches: list[list[int]] = []
    current: list[int] = []
    present: set[int] = set()
    waiting: deque[int] = deque()

    def add(g: int) -> bool:
        nonlocal current, present
        s = int(speakers[g])
        if s in present:
            return False
        current.append(g)
        present.add(s)
        if len(current) == batch_size:
            batches.append(current)
            current, present = [], set()
        return True

    for g in order.tolist():
        before = len(batches)
        if not add(g):
            waiting.append(g)
        elif len(batches) > before and waiting:
            # a new batch has begun: the groups that waited go first
            for _ in range(len(waiting)):
                w = waiting.popleft()
                if not add(w):
                    waiting.append(w)
    return batches


class SpeakerBatchSampler:
    """Yields this process's batches of one epoch as flat utterance-index lists.

    A batch lists ``batch_size`` groups one after the other: [spk A utt 1, spk A utt 2, spk B
    utt 1, ...], so its crops reshape to [batch_size, nPerSpeaker, ...]. Use as a DataLoader
    ``sampler`` with ``batch_size=None`` (the dataset takes a list of indices) or as
    ``batch_sampler``.
    """

    def __init__(self, labels, batch_size: int, n_per_speaker: int = 1, max_seg_per_spk: int = 0, seed: int = 0,
                 rank: int = 0, world_size: int = 1, unique_speakers: bool = True):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.n_per_speaker = int(n_per_speaker)
        self.max_seg_per_spk = int(max_seg_per_spk)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.unique = bool(unique_speakers)
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def all_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every process's batches of ``epoch`` (before sharding), as flat index lists."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng((self.seed, epoch, 0xB47C4))
        groups, speakers = speaker_groups(self.labels, self.n_per_speaker, self.max_seg_per_spk, rng)
        batches = fill_batches(spread_order(speakers, rng), speakers, self.batch_size, self.unique)
        return [np.concatenate([groups[g] for g in b]).tolist() for b in batches]

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """This process's share of the batches of ``epoch``; ConfigError when the epoch has fewer
        batches than processes (every process would get none)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cache is None or self._cache[0] != epoch:
            every = self.all_batches(epoch)
            if len(every) < self.world_size:
                raise ConfigError(_too_few_batches(epoch, len(every), self.batch_size, self.n_per_speaker,
                                                   self.labels, self.max_seg_per_spk, self.world_size))
            usable = len(every) // self.world_size * self.world_size
            self._cache = (epoch, every[self.rank:usable:self.world_size])
        return self._cache[1]

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def _too_few_batches(epoch: int, total: int, batch_size: int, n_per_speaker: int, labels: np.ndarray,
                     max_seg_per_spk: int, world_size: int) -> str:
    k = _groups_per_speaker(labels, n_per_speaker, max_seg_per_spk)
    per_spk = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    if max_seg_per_spk > 0:
        per_spk = np.minimum(per_spk, max_seg_per_spk)
    return (f"epoch {epoch} has {total} batches of {batch_size} speakers x {n_per_speaker} utterances from "
            f"{int(per_spk[k > 0].sum())} utterances of {int((k > 0).sum())} speakers, fewer than the "
            f"{world_size} processes that need one each: lower data.batch_size")


def plan_batches(labels, batch_size: int, n_per_speaker: int, *, unique_speakers: bool, loss_name: str,
                 classification: bool, max_seg_per_spk: int = 0, world_size: int = 1, seed: int = 0,
                 where: str | None = None, epochs: int = 1) -> BatchPlan:
    """Check the batch layout against the data before training; returns the batch size to use.

    With distinct speakers per batch, a corpus with fewer usable speakers than ``batch_size``
    cannot fill a batch: classification losses then train on batches of all the speakers there
    are (with a warning), metric losses are refused with the setting to change. Any setting that
    leaves one of epochs 1 .. ``epochs`` without a batch for every process is refused before
    training: by :func:`min_batches` when it guarantees enough, else epoch by epoch (which
    happens only when the data barely fill ``world_size`` batches).
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    per_spk = np.minimum(counts, max_seg_per_spk) if max_seg_per_spk > 0 else counts
    usable = int((per_spk >= n_per_speaker).sum())
    skipped = int(((counts > 0) & (per_spk < n_per_speaker)).sum())
    if skipped:
        log.warning("%d speakers have fewer than data.nPerSpeaker=%d utterances and are not used", skipped,
                    n_per_speaker)
    if usable == 0:
        raise ConfigError(f"no speaker has data.nPerSpeaker={n_per_speaker} utterances to put in a batch "
                          f"(loss {loss_name})", path=where)
    min_speakers = 1 if classification else 2
    if unique_speakers and usable < batch_size:
        if classification and usable * n_per_speaker >= 2:
            log.warning("only %d speakers can go into a batch of distinct speakers: data.batch_size %d -> %d "
                        "(set --set data.unique_speakers=false to keep %d with repeated speakers)",
                        usable, batch_size, usable, batch_size)
            batch_size = usable
        else:
            raise ConfigError(f"loss {loss_name} needs batches of data.batch_size={batch_size} distinct speakers "
                              f"but only {usable} speakers have data.nPerSpeaker={n_per_speaker} utterances: "
                              f"set --set data.batch_size={max(usable, min_speakers)} or use more data", path=where)
    if batch_size < min_speakers:
        raise ConfigError(f"loss {loss_name} compares speakers within a batch: data.batch_size must be >= 2, "
                          f"got {batch_size}", path=where)
    if batch_size * n_per_speaker < 2:
        raise ConfigError(f"batches of {batch_size * n_per_speaker} crop cannot train batch normalisation: "
                          f"set --set data.batch_size=2 or more", path=where)
    sampler = SpeakerBatchSampler(labels, batch_size, n_per_speaker, max_seg_per_spk, seed, 0, world_size,
                                  unique_speakers)
    total = len(sampler.all_batches(1))
    if min_batches(labels, batch_size, n_per_speaker, max_seg_per_spk, unique_speakers) < world_size:
        # not guaranteed for every epoch: a later epoch may pair its groups worse than the first
        for epoch in range(1, max(1, int(epochs)) + 1):
            n = total if epoch == 1 else len(sampler.all_batches(epoch))
            if n < world_size:
                raise ConfigError(_too_few_batches(epoch, n, batch_size, n_per_speaker, labels, max_seg_per_spk,
                                                   world_size), path=where)
    return BatchPlan(batch_size=batch_size, usable_speakers=usable, batches_per_epoch=total // world_size)
