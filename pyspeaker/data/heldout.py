"""Held-out validation sets, and the checks a recipe makes of a user's train / test / trials.

:func:`split_valid` holds out part of a training data dir (seeded, deterministic) as a validation
set: either ``N`` speakers (open-set validation: the speakers are unseen in training, as test
speakers usually are) or ``N`` utterances of every speaker (closed-set validation, for corpora with
too few speakers to spare, such as FSDD's 4 or 6: the speakers are seen, their utterances are not).
``<valid>`` holds the held-out utterances plus ``trials`` (every pair of them, or a seeded sample of
at most ``max_trials`` with up to half target pairs), ``<sub>`` the rest. Both are new data dirs,
written atomically; the training dir is only read.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

from pyspeaker.data.kaldi_dir import DataDir, write_data_dir
from pyspeaker.errors import ConfigError, DataError

MIN_TRAIN_SPEAKERS = 2
MIN_VALID_UTTERANCES = 2   # per speaker: a target trial needs a pair


def choose_valid_speakers(speakers: list[str], n: int, seed: int, where: str | None = None) -> list[str]:
    """``n`` of ``speakers`` (sorted), the same ones for the same seed; at least 2 must remain."""
    speakers = sorted(speakers)
    if n < 1:
        raise ConfigError(f"the number of validation speakers must be at least 1, got {n}")
    if n > len(speakers) - MIN_TRAIN_SPEAKERS:
        raise ConfigError(f"--valid-speakers {n}: the training set has {len(speakers)} speakers and at least "
                          f"{MIN_TRAIN_SPEAKERS} must stay for training (at most {max(0, len(speakers) - 2)})",
                          path=where)
    rng = np.random.default_rng(seed)
    return sorted(speakers[i] for i in rng.choice(len(speakers), size=n, replace=False))


def choose_valid_utterances(spk2utt: dict[str, list[str]], n: int, seed: int, where: str | None = None) -> set[str]:
    """``n`` utterances of every speaker (seeded), each speaker keeping at least one for training."""
    if n < MIN_VALID_UTTERANCES:
        raise ConfigError(f"the number of validation utterances per speaker must be at least {MIN_VALID_UTTERANCES} "
                          f"(a target trial is a pair of them), got {n}")
    short = sorted(s for s, utts in spk2utt.items() if len(utts) <= n)
    if short:
        raise ConfigError(f"--valid-utterances {n}: speaker {short[0]!r} has {len(spk2utt[short[0]])} utterances and "
                          f"needs at least {n + 1} ({n} held out, 1 left to train on); {len(short)} of "
                          f"{len(spk2utt)} speakers have too few", path=where)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for spk in sorted(spk2utt):
        utts = sorted(spk2utt[spk])
        chosen.update(utts[i] for i in rng.choice(len(utts), size=n, replace=False))
    return chosen


def valid_trials(spk2utt: dict[str, list[str]], max_trials: int, seed: int) -> list[tuple[str, str, bool]]:
    """Every pair of the utterances (first < second in sorted order), or a seeded sample of at most
    ``max_trials`` of them with up to half target pairs; in sorted order."""
    utt2spk = {u: s for s, utts in spk2utt.items() for u in utts}
    utts = sorted(utt2spk)
    index = {u: i for i, u in enumerate(utts)}
    targets = [(a, b) for s in sorted(spk2utt) for a, b in itertools.combinations(sorted(spk2utt[s]), 2)]
    n_all = len(utts) * (len(utts) - 1) // 2
    n_non = n_all - len(targets)
    if not targets:
        raise ConfigError("the validation speakers have one utterance each: no target trials (use more speakers, "
                          "or speakers with at least 2 utterances)")
    if n_all <= max_trials:
        pairs = itertools.combinations(utts, 2)
        return [(a, b, utt2spk[a] == utt2spk[b]) for a, b in pairs]
    rng = np.random.default_rng(seed)
    n_tgt = min(len(targets), max_trials // 2)
    chosen_tgt = [targets[i] for i in sorted(rng.choice(len(targets), size=n_tgt, replace=False))]
    n_want = min(n_non, max_trials - n_tgt)
    chosen_non: set[tuple[int, int]] = set()
    while len(chosen_non) < n_want:  # rejection sampling: non-target pairs are most pairs
        i, j = rng.integers(0, len(utts), size=(2, 2 * (n_want - len(chosen_non)) + 16))
        for a, b in zip(i.tolist(), j.tolist()):
            if a == b or utt2spk[utts[a]] == utt2spk[utts[b]]:
                continue
            chosen_non.add((min(a, b), max(a, b)))
            if len(chosen_non) == n_want:
                break
    out = [(a, b, True) for a, b in chosen_tgt] + [(utts[a], utts[b], False) for a, b in chosen_non]
    return sorted(out, key=lambda t: (index[t[0]], index[t[1]]))


def _subset(dd: DataDir, utts: set[str]) -> dict:
    segments = None if dd.segments is None else {u: dd.segments[u] for u in utts}
    recordings = set(utts) if segments is None else {rec for rec, _, _ in segments.values()}
    return {"wav_scp": {r: dd.wav_scp[r] for r in recordings}, "utt2spk": {u: dd.utt2spk[u] for u in utts},
            "segments": segments, "utt2dur": None if dd.utt2dur is None else
            {u: dd.utt2dur[u] for u in utts if u in dd.utt2dur}}


def split_valid(train_dir: str | os.PathLike, valid_dir: str | os.PathLike, sub_dir: str | os.PathLike,
                num_speakers: int = 0, seed: int = 0, max_trials: int = 20000,
                num_utterances: int = 0) -> tuple[int, int, int, int]:
    """Write ``valid_dir`` (``num_speakers`` speakers, or ``num_utterances`` utterances of every
    speaker, + ``trials``) and ``sub_dir`` (the rest); exactly one of the two counts is given.
    Returns (validation speakers, validation utterances, their trials, training speakers)."""
    from pyspeaker.data.trials import Trials, write_trials
    from pyspeaker.fileio import atomic_dir

    if (num_speakers > 0) == (num_utterances > 0):
        raise ConfigError("hold out either speakers or utterances of every speaker: give exactly one of "
                          f"--num-speakers / --num-utterances (got {num_speakers} and {num_utterances})")
    if max_trials < 1:
        raise ConfigError(f"the validation trials cap must be at least 1, got {max_trials}")
    dd = DataDir.load(train_dir)
    if num_speakers:
        chosen = choose_valid_speakers(dd.speakers, num_speakers, seed, where=dd.file("utt2spk"))
        valid_utts = {u for s in chosen for u in dd.spk2utt[s]}
    else:
        valid_utts = choose_valid_utterances(dd.spk2utt, num_utterances, seed, where=dd.file("utt2spk"))
    sub_utts = set(dd.utt2spk) - valid_utts
    valid_spk2utt: dict[str, list[str]] = {}
    for u in sorted(valid_utts):
        valid_spk2utt.setdefault(dd.utt2spk[u], []).append(u)
    trials = valid_trials(valid_spk2utt, max_trials, seed)
    for is_valid, out, utts in ((True, valid_dir, valid_utts), (False, sub_dir, sub_utts)):
        with atomic_dir(out) as tmp:
            write_data_dir(tmp, **_subset(dd, utts))
            if is_valid:
                write_trials(tmp / "trials", Trials([t[0] for t in trials], [t[1] for t in trials],
                                                    np.array([t[2] for t in trials], dtype=bool)))
    return len(valid_spk2utt), len(valid_utts), len(trials), len({dd.utt2spk[u] for u in sub_utts})


def check_trials_ids(trials_path: str | os.PathLike, test_dir: str | os.PathLike,
                     enroll_dir: str | os.PathLike | None = None) -> int:
    """Every enroll id of the trials is an utterance of ``enroll_dir`` (else of ``test_dir``), every
    test id one of ``test_dir``; the first that is not is a DataError naming its trials line."""
    from pyspeaker.data.tables import read_utt2spk
    from pyspeaker.data.trials import read_trials

    test = set(read_utt2spk(Path(test_dir) / "utt2spk"))
    enroll = test if enroll_dir is None else set(read_utt2spk(Path(enroll_dir) / "utt2spk"))
    trials = read_trials(trials_path)
    ids = trials.vocab.id_objects()
    in_enroll = np.array([i in enroll for i in ids.tolist()], dtype=bool)
    in_test = np.array([i in test for i in ids.tolist()], dtype=bool)
    bad = ~in_enroll[trials.enroll_codes] | ~in_test[trials.test_codes]
    if bad.any():
        k = int(np.argmax(bad))
        side, utt, where = (("enroll", ids[trials.enroll_codes[k]], enroll_dir or test_dir)
                            if not in_enroll[trials.enroll_codes[k]] else ("test", ids[trials.test_codes[k]], test_dir))
        raise DataError(f"{side} utterance {utt!r} of trial '{trials.pair(k)}' is not in {where} "
                        f"({int(bad.sum())} trials name utterances not in the data dirs)",
                        path=trials_path, line=trials.line(k))
    return len(trials)


def shared_speakers(train_dir: str | os.PathLike, *other_dirs: str | os.PathLike) -> list[str]:
    """The speakers of ``train_dir`` that also speak in any of ``other_dirs`` (sorted)."""
    from pyspeaker.data.tables import read_utt2spk

    train = set(read_utt2spk(Path(train_dir) / "utt2spk").values())
    other = {s for d in other_dirs for s in read_utt2spk(Path(d) / "utt2spk").values()}
    return sorted(train & other)
