"""Batched augmentation (training/augment.py BatchAugmenter) against the per-crop reference, noise
and RIR banks (training/banks.py), repeatability whatever the number of workers, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO
from pyspeaker.errors import ConfigError, DataError

SR = 16000


def make_corpus(root: Path) -> Path:
    """A data dir: 2 speakers x 3 utterances of 1.2-2 s of harmonic 'voice'."""
    rng = np.random.default_rng(3)
    root.mkdir(parents=True)
    wav, utt2spk = [], []
    for s in range(2):
        for u in range(3):
            t = np.arange(int(SR * rng.uniform(1.2, 2.0))) / SR
            x = sum(a * np.sin(2 * np.pi * (120 + 40 * s) * (k + 1) * t) for k, a in enumerate([0.5, 0.3, 0.2]))
            x = (x * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.01, len(t))).astype(np.float32)
            utt = f"spk{s}-u{u}"
            sf.write(root / f"{utt}.wav", x, SR)
            wav.append(f"{utt} {root / (utt + '.wav')}\n")
            utt2spk.append(f"{utt} spk{s}\n")
    (root / "wav.scp").write_text("".join(wav))
    (root / "utt2spk").write_text("".join(utt2spk))
    return root


def make_musan(root: Path, rate: int = SR) -> Path:
    rng = np.random.default_rng(1)
    for kind, count in (("noise", 2), ("music", 1), ("speech", 3)):
        d = root / kind
        d.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            n = int(rate * (0.5 if i == 0 else 2.5))  # one shorter than a crop (wrapped around)
            x = rng.normal(0, 0.1, n) if kind != "music" else 0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
            sf.write(d / f"{kind}-x-{i:04d}.wav", x.astype(np.float32), rate)
    return root


def make_rirs(root: Path, samples: int = 1600) -> Path:
    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        h = rng.normal(0, 1, samples) * np.exp(-np.arange(samples) / 300.0)
        h[: 20 + 10 * i] *= 0.05  # direct path not at 0: the alignment is exercised
        sf.write(root / f"rir{i}.wav", h.astype(np.float32), SR)
    return root


def audio_cfg(tmp_path, **aug):
    from pyspeaker.training.config import load_config

    sets = ["model.name=TDNN", "data.crop_frames=60", f"data.feat_conf={REPO / 'conf' / 'fbank.conf'}",
            f"augment.bank_dir={tmp_path / 'banks'}"] + [f"augment.{k}={v}" for k, v in aug.items()]
    return load_config(None, sets)


def full_data(tmp_path):
    from pyspeaker.training.data import load_train_data

    cfg = audio_cfg(tmp_path, noise_dir=make_musan(tmp_path / "musan"), rir_dir=make_rirs(tmp_path / "rirs"),
                    prob=1.0, speed_perturb="true", specaugment="true", freq_masks=2, time_masks=1)
    return load_train_data(cfg, data_dir=make_corpus(tmp_path / "train"))


def test_batched_equals_per_crop_reference(tmp_path):
    from pyspeaker.features import FeatureExtractor
    from pyspeaker.training.augment import masks_reference

    data = full_data(tmp_path)
    ds = data.dataset
    indices = list(range(len(ds)))  # 18 items: 3 speed factors x 6 utterances
    kinds = {ds.draws(i)[2].kind for i in indices}
    assert {"reverb", "noise", "babble"} <= kinds | {"music"} and len(kinds) >= 3
    loader = data.on_device(torch.utils.data.DataLoader(ds, sampler=[indices], batch_size=None), "cpu")
    batch = ds[indices]  # deferred by on_device: the raw crops and draws
    from pyspeaker.training.augment import BatchAugmenter

    aug = BatchAugmenter(ds.need, ds.sample_rate, ds.feature_cfg, ds.crop, "cpu", masks=True)
    feats, labels = aug.apply(batch)
    assert feats.shape == (18, 60, 80) and feats.device.type == "cpu"
    ext = FeatureExtractor(ds.feature_cfg)
    for row, i in enumerate(indices):
        wav = ds.waveform(i)  # the per-crop numpy reference (speed perturbation + augmentation)
        ref = ext(wav, SR)[:60]
        _, _, _, (freq, time) = ds.draws(i)
        ref = masks_reference(ref, freq, time)
        np.testing.assert_allclose(feats[row].numpy(), ref, atol=2e-3, rtol=1e-4)
        assert int(labels[row]) == int(ds.labels[i])
    # masks were drawn (2 freq bands and 1 time span per crop) and land on the example's mean
    assert int(batch.freq_masks[..., 1].sum()) > 0 and batch.freq_masks.shape == (18, 2, 2)
    assert isinstance(batch.noise, torch.Tensor) and batch.rir.shape[0] == sum(
        ds.draws(i)[2].kind == "reverb" for i in indices)
    (inputs, labels2), = list(loader)
    assert torch.equal(inputs, feats) and torch.equal(labels2, labels)


def test_same_seed_same_batches_with_0_and_2_workers(tmp_path):
    data = full_data(tmp_path)
    ds = data.dataset
    ds.set_epoch(3)
    batches = [[0, 5, 9, 17], [1, 2, 12, 13]]
    runs = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(ds, sampler=batches, batch_size=None, num_workers=workers)
        runs.append([x for x, _ in data.on_device(loader, "cpu")])
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    ds.set_epoch(4)  # another epoch, other crops
    other = [x for x, _ in data.on_device(torch.utils.data.DataLoader(ds, sampler=batches, batch_size=None), "cpu")]
    assert not torch.equal(other[0], runs[0][0])


def test_bank_is_built_once_reused_and_rebuilt_for_a_changed_dir(tmp_path, monkeypatch, caplog):
    from pyspeaker.training import banks
    from pyspeaker.training.augment import read_noise_dir

    musan = make_musan(tmp_path / "musan")
    items = sorted((k, e) for k, v in read_noise_dir(musan).items() for e in v)
    first = banks.build_bank("noise", items, SR, musan, tmp_path / "banks")
    assert first.path.parent == tmp_path / "banks" and len(first) == 6
    assert isinstance(first.samples, np.memmap)
    x, _ = sf.read(items[0][1], dtype="float32")
    np.testing.assert_array_equal(first.clip(0), x)
    assert first.length(0) == len(x)

    def no_open(*a, **k):
        raise AssertionError("a bank file was decoded again")

    monkeypatch.setattr(banks, "_load", no_open)
    again = banks.build_bank("noise", items, SR, musan, tmp_path / "banks")
    assert again.path == first.path and np.array_equal(again.samples, first.samples)
    monkeypatch.undo()
    # a rewritten file: a new bank under another key
    sf.write(items[0][1], np.zeros(800, dtype=np.float32), SR)
    changed = banks.build_bank("noise", items, SR, musan, tmp_path / "banks")
    assert changed.path != first.path and changed.length(0) == 800
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "banks").iterdir()) == ["noise", "noise"]
    # noise at another rate: resampled once, with a log line
    other = make_musan(tmp_path / "musan8k", rate=8000)
    items8 = sorted((k, e) for k, v in read_noise_dir(other).items() for e in v)
    with caplog.at_level("INFO"):
        b8 = banks.build_bank("noise", items8, SR, other, tmp_path / "banks")
    assert "6 noise recordings at 8000 Hz resampled once to 16000 Hz for the bank" in caplog.text
    assert [b8.length(i) for i in range(6)] == [first.length(i) for i in range(6)]  # the same durations at 16 kHz


def test_bad_input_is_one_clear_error(tmp_path):
    from pyspeaker.training.data import load_train_data

    corpus = make_corpus(tmp_path / "train")
    (tmp_path / "empty" / "noise").mkdir(parents=True)
    (tmp_path / "empty" / "noise" / "readme.txt").write_text("no audio here")
    with pytest.raises(DataError, match=r"no noise, music or speech recordings found") as e:
        load_train_data(audio_cfg(tmp_path, noise_dir=tmp_path / "empty"), data_dir=corpus)
    assert str(tmp_path / "empty") in str(e.value)
    # an RIR longer than the crop (60 frames = 9840 samples): refused with both lengths
    long = make_rirs(tmp_path / "long", samples=12000)
    with pytest.raises(DataError, match=r"room impulse response .*rir0.wav has 12000 samples \(0.75 s\), longer "
                                        r"than the training crop of 9840 samples \(0.61 s\)"):
        load_train_data(audio_cfg(tmp_path, rir_dir=long), data_dir=corpus)
    with pytest.raises(ConfigError, match=r"augment.noise_snr is \[15, 0\]: the minimum is above the maximum"):
        audio_cfg(tmp_path, noise_snr="[15, 0]")
    from pyspeaker.training.augment import WaveAugment

    base = {"prob": 1.0, "noise_snr": [0, 15], "music_snr": [5, 15], "babble_snr": [20, 13],
            "babble_speakers": [3, 7], "noise_dir": None, "rir_dir": None}
    with pytest.raises(ConfigError, match=r"augment.babble_snr is \[20, 13\]: the minimum SNR is above the maximum"):
        WaveAugment(base, SR)


def test_audio_bank_gives_the_file_reads_crops_without_opening_a_file(tmp_path, monkeypatch):
    """data.audio_bank: crops sliced from the memory-mapped copy are the crops read from the files
    for the same draws (whole files and segments, every speed factor); no file is opened per crop."""
    from pyspeaker import audio
    from pyspeaker.training.data import load_train_data

    corpus = make_corpus(tmp_path / "train")
    seg = tmp_path / "seg"  # the same recordings cut into two segments each (one shorter than a crop)
    seg.mkdir()
    recs = [line.split()[0] for line in (corpus / "wav.scp").read_text().splitlines()]
    (seg / "wav.scp").write_text((corpus / "wav.scp").read_text())
    (seg / "segments").write_text("".join(f"{r}-a {r} 0.00 0.50\n{r}-b {r} 0.40 -1\n" for r in recs))
    (seg / "utt2spk").write_text("".join(f"{r}-{p} {r.split('-')[0]}\n" for r in recs for p in "ab"))
    for d in (corpus, seg):
        sets = {"speed_perturb": "true", "specaugment": "true"}
        files = load_train_data(audio_cfg(tmp_path, **sets), data_dir=d).dataset
        cfg = audio_cfg(tmp_path, **sets)
        cfg["data"]["audio_bank"] = True
        banked = load_train_data(cfg, data_dir=d).dataset
        assert banked.bank is not None and isinstance(banked.bank.samples, np.memmap)
        assert banked.bank.path.parent == tmp_path / "banks" and banked.bank.path.name.startswith("audio-")
        monkeypatch.setattr(audio, "read_random_span", lambda *a, **k: pytest.fail("a file was read per crop"))
        for epoch in (0, 1):
            files.set_epoch(epoch)
            banked.set_epoch(epoch)
            for i in range(len(files)):
                monkeypatch.undo()
                want = files.draws(i)
                monkeypatch.setattr(audio, "read_random_span", lambda *a, **k: pytest.fail("a file was read"))
                got = banked.draws(i)
                np.testing.assert_array_equal(got[0], want[0])
                assert got[1] == want[1] and all(np.array_equal(a, b) for a, b in zip(got[3], want[3]))
        monkeypatch.undo()
    # a segment past the end of its recording: one error naming the segments line
    (seg / "segments").write_text((seg / "segments").read_text().replace("0.00 0.50", "9.00 9.50", 1))
    cfg = audio_cfg(tmp_path)
    cfg["data"]["audio_bank"] = True
    with pytest.raises(DataError, match=r"seg/segments:1: segment starts at 9 s, after the end of its recording \(1.\d+ s\)"):
        load_train_data(cfg, data_dir=seg)
    with pytest.raises(ConfigError, match=r"data.audio_bank must be true or false, got 'yes'"):
        from pyspeaker.training.config import load_config

        load_config(None, ["data.audio_bank='yes'"])
