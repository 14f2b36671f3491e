"""The speaker batch sampler: layout, distinct speakers, seeding, sharding, and refusals before training."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from pyspeaker.errors import ConfigError
from pyspeaker.training.sampler import SpeakerBatchSampler, plan_batches


def _labels(counts) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def _groups(batch: list[int], n: int) -> list[list[int]]:
    return [batch[i:i + n] for i in range(0, len(batch), n)]


def test_batches_hold_n_utterances_of_distinct_speakers():
    rng = np.random.default_rng(0)
    labels = _labels(rng.integers(2, 30, size=40))
    s = SpeakerBatchSampler(labels, batch_size=8, n_per_speaker=3, seed=5)
    batches = s.batches(1)
    assert len(batches) > 0
    seen = []
    for b in batches:
        assert len(b) == 8 * 3
        groups = _groups(b, 3)
        spk = [set(labels[g].tolist()) for g in groups]
        assert all(len(x) == 1 for x in spk)          # a group is one speaker
        assert len({x.pop() for x in spk}) == 8       # no speaker twice in a batch
        seen += b
    assert len(seen) == len(set(seen))                # an utterance at most once per epoch


def test_nearly_all_data_is_used_even_with_few_speakers():
    # 4 speakers, batches of 4 distinct speakers: every utterance fits (voxceleb_trainer's greedy
    # pass drops every group whose speaker is already in the batch being filled)
    labels = _labels([6, 6, 6, 6])
    s = SpeakerBatchSampler(labels, batch_size=4, n_per_speaker=1, seed=0)
    for epoch in range(1, 6):
        assert sum(len(b) for b in s.batches(epoch)) == 24
    # uneven speakers: what cannot be placed in a batch of distinct speakers is all that is lost
    rng = np.random.default_rng(1)
    labels = _labels(rng.integers(5, 60, size=300))
    s = SpeakerBatchSampler(labels, batch_size=100, n_per_speaker=2, seed=0)
    used = sum(len(b) for b in s.batches(1))
    assert used >= 0.97 * (np.bincount(labels) // 2 * 2).sum()


def test_max_seg_per_spk_and_remainders():
    labels = _labels([10, 3, 7, 2])
    s = SpeakerBatchSampler(labels, batch_size=2, n_per_speaker=2, max_seg_per_spk=4, seed=0, unique_speakers=False)
    used = [i for b in s.batches(1) for i in b]
    per_spk = np.bincount(labels[used], minlength=4)
    assert per_spk.tolist() == [4, 2, 4, 2]  # at most 4; rounded down to whole groups of 2


def test_seeded_shuffling_per_epoch():
    labels = _labels([5] * 12)
    a = SpeakerBatchSampler(labels, 4, 1, seed=3)
    b = SpeakerBatchSampler(labels, 4, 1, seed=3)
    assert a.batches(1) == b.batches(1) and a.batches(2) == b.batches(2)
    assert a.batches(1) != a.batches(2)
    assert a.batches(1) != SpeakerBatchSampler(labels, 4, 1, seed=4).batches(1)
    a.set_epoch(2)
    assert list(a) == b.batches(2) and len(a) == len(b.batches(2))


def test_shards_are_disjoint_and_equal():
    rng = np.random.default_rng(2)
    labels = _labels(rng.integers(2, 20, size=50))
    full = SpeakerBatchSampler(labels, 6, 2, seed=1).all_batches(3)
    shards = [SpeakerBatchSampler(labels, 6, 2, seed=1, rank=r, world_size=3).batches(3) for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(full) // 3
    flat = [[i for b in s for i in b] for s in shards]
    assert not (set(flat[0]) & set(flat[1])) and not (set(flat[1]) & set(flat[2])) and not (set(flat[0]) & set(flat[2]))
    assert shards[1][0] == full[1]  # process r takes batches r, r + world_size, ...
    with pytest.raises(ValueError):
        SpeakerBatchSampler(labels, 6, 2, rank=3, world_size=3)


def test_plan_reduces_classification_batches_with_a_warning(caplog):
    labels = _labels([6, 6, 6, 6])  # e.g. FSDD's open-set training split: 4 speakers
    with caplog.at_level(logging.WARNING):
        plan = plan_batches(labels, 200, 1, unique_speakers=True, loss_name="amsoftmax", classification=True)
    assert plan.batch_size == 4 and plan.batches_per_epoch == 6 and plan.usable_speakers == 4
    assert "data.batch_size 200 -> 4" in caplog.text
    plan = plan_batches(labels, 8, 1, unique_speakers=False, loss_name="amsoftmax", classification=True)
    assert plan.batch_size == 8 and plan.batches_per_epoch == 3


def test_plan_refuses_impossible_layouts_before_training():
    labels = _labels([6, 6, 6, 6])
    # voxceleb_trainer builds zero batches here and dies with ZeroDivisionError
    with pytest.raises(ConfigError) as e:
        plan_batches(labels, 200, 2, unique_speakers=True, loss_name="angleproto", classification=False)
    assert str(e.value) == ("loss angleproto needs batches of data.batch_size=200 distinct speakers but only 4 "
                            "speakers have data.nPerSpeaker=2 utterances: set --set data.batch_size=4 or use more data")
    with pytest.raises(ConfigError, match="no speaker has data.nPerSpeaker=8 utterances"):
        plan_batches(labels, 2, 8, unique_speakers=True, loss_name="ge2e", classification=False)
    with pytest.raises(ConfigError, match="data.batch_size must be >= 2"):
        plan_batches(labels, 1, 2, unique_speakers=True, loss_name="triplet", classification=False)
    with pytest.raises(ConfigError, match="fewer than the 4 processes"):
        plan_batches(labels, 4, 2, unique_speakers=True, loss_name="angleproto", classification=False, world_size=4)
    with pytest.raises(ConfigError, match="cannot train batch normalisation"):
        plan_batches(_labels([6]), 1, 1, unique_speakers=True, loss_name="softmax", classification=True)


def test_feasibility_is_checked_for_every_epoch_not_only_the_first():
    # speaker 0 has three utterances, speakers 1 and 2 one each: batches of 2 distinct speakers
    # are (0, 1), (0, 2) in most epochs, but in epoch 5 of seed 1 speakers 1 and 2 pair up first
    # and the other two utterances of speaker 0 cannot go together: 1 batch for 2 processes
    labels = _labels([3, 1, 1])
    counts = [len(SpeakerBatchSampler(labels, 2, 1, seed=1).all_batches(e)) for e in range(1, 7)]
    assert counts == [2, 2, 2, 2, 1, 2]
    kw = dict(unique_speakers=True, loss_name="softmax", classification=True, world_size=2, seed=1)
    plan = plan_batches(labels, 2, 1, epochs=4, **kw)
    assert plan.batch_size == 2 and plan.batches_per_epoch == 1
    with pytest.raises(ConfigError) as e:
        plan_batches(labels, 2, 1, epochs=10, **kw)
    assert str(e.value) == ("epoch 5 has 1 batches of 2 speakers x 1 utterances from 5 utterances of 3 speakers, "
                            "fewer than the 2 processes that need one each: lower data.batch_size")
    # the sampler itself refuses such an epoch instead of giving every process no batch
    s = SpeakerBatchSampler(labels, 2, 1, seed=1, rank=1, world_size=2)
    assert len(s.batches(4)) == 1
    with pytest.raises(ConfigError, match="epoch 5 has 1 batches of 2 speakers"):
        s.batches(5)


def test_every_epoch_has_at_least_the_guaranteed_number_of_batches():
    # the bound plan_batches relies on to skip the epoch-by-epoch check (see min_batches)
    from pyspeaker.training.sampler import min_batches

    rng = np.random.default_rng(7)
    tight = 0
    for trial in range(150):
        labels = _labels(rng.integers(1, 25, int(rng.integers(2, 9))) ** int(rng.integers(1, 3)))
        bs, n = int(rng.integers(2, 6)), int(rng.integers(1, 3))
        for unique in (True, False):
            bound = min_batches(labels, bs, n, 0, unique)
            got = [len(SpeakerBatchSampler(labels, bs, n, seed=trial, unique_speakers=unique).all_batches(e))
                   for e in range(1, 6)]
            assert min(got) >= bound, (trial, unique, got, bound)
            tight += min(got) == bound
    assert tight > 150  # the bound is often reached: it is not a trivially low one
    assert min_batches(_labels([3, 1, 1]), 2, 1, 0, True) == 1
    assert min_batches(_labels([6, 6, 6, 6]), 4, 1, 0, True) == 6
    assert min_batches(_labels([6, 6, 6, 6]), 4, 2, 4, True) == 2   # max_seg_per_spk=4: 2 groups each
    assert min_batches(_labels([6, 6, 6, 6]), 5, 1, 0, False) == 4  # repeated speakers: 24 // 5
