#!/usr/bin/env python
"""Loader throughput: crops per second of the training data path, pyspeaker vs. voxceleb_trainer's
loader and augmentation (re-implemented here, no network), in the same run on generated data.

Cases (2 s crops, 200 frames, batches of 64, DataLoader workers as --workers, 1 torch thread each):
  store      pyspeaker's feature store (in memory): CropDataset's one-gather batches.
  audio      crops read from WAVs by seeking, Kaldi fbank (conf/fbank.conf) of the whole batch;
             pyspeaker: workers hand over raw crops, features made by BatchAugmenter in the main
             process (the device path, here on the CPU).
  augmented  audio + MUSAN noise/music/babble + RIR reverberation (p = 1: every crop augmented)
             + speed perturbation 0.9/1.0/1.1 + SpecAugment: pyspeaker's banks and batched path.
  vt-audio   voxceleb_trainer's DatasetLoader: soundfile.read of the whole file (float64), wrap-pad,
             random crop, per crop; waveforms only (its features are computed in the network).
  vt-augmented  vt-audio + its AugmentWAV: per crop one of none / reverb / music / speech / noise,
             each noise and RIR file read with soundfile per crop, numpy SNR scaling, scipy convolve.
             (voxceleb_trainer has no speed perturbation or SpecAugment in its loader.)

Usage: python bench/loader_throughput.py [--quick] [--batches 20] [--workers 2] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

SR, FRAMES, BATCH = 16000, 200, 64
MAX_AUDIO = FRAMES * 160 + 240  # voxceleb_trainer's crop


def make_data(root: Path, utts: int) -> dict:
    rng = np.random.default_rng(0)
    train = root / "train"
    train.mkdir(parents=True)
    wav, u2s = [], []
    for i in range(utts):
        x = (rng.normal(0, 0.1, int(SR * rng.uniform(3, 8)))).astype(np.float32)
        utt = f"spk{i % 50:03d}-u{i:05d}"
        p = train / f"{utt}.wav"
        sf.write(p, x, SR, subtype="PCM_16")
        wav.append((utt, f"{utt} {p}\n"))
        u2s.append((utt, f"{utt} spk{i % 50:03d}\n"))
    wav, u2s = [t for _, t in sorted(wav)], [t for _, t in sorted(u2s)]
    (train / "wav.scp").write_text("".join(wav))
    (train / "utt2spk").write_text("".join(u2s))
    musan = root / "musan"
    for kind, count, secs in (("noise", 20, 8), ("music", 10, 30), ("speech", 20, 20)):
        (musan / kind).mkdir(parents=True)
        for i in range(count):
            sf.write(musan / kind / f"{kind}-b-{i:04d}.wav", rng.normal(0, 0.1, SR * secs).astype(np.float32), SR,
                     subtype="PCM_16")
    rirs = root / "rirs"
    rirs.mkdir()
    for i in range(20):
        n = SR // 2
        sf.write(rirs / f"rir{i:03d}.wav", (rng.normal(0, 1, n) * np.exp(-np.arange(n) / 1500)).astype(np.float32), SR)
    return {"train": train, "musan": musan, "rirs": rirs, "utts": utts}


# ----------------------------------------------------------------------------- voxceleb_trainer, re-implemented

def vt_load_wav(filename, max_frames):
    max_audio = max_frames * 160 + 240
    audio, _ = sf.read(filename)
    audiosize = audio.shape[0]
    if audiosize <= max_audio:
        audio = np.pad(audio, (0, max_audio - audiosize + 1), "wrap")
        audiosize = audio.shape[0]
    start = np.int64(random.random() * (audiosize - max_audio))
    return np.stack([audio[int(start):int(start) + max_audio]], axis=0).astype(float)


class VTAugmentWAV:
    def __init__(self, musan_path, rir_path, max_frames):
        import glob

        self.max_frames, self.max_audio = max_frames, max_frames * 160 + 240
        self.noisetypes = ["noise", "speech", "music"]
        self.noisesnr = {"noise": [0, 15], "speech": [13, 20], "music": [5, 15]}
        self.numnoise = {"noise": [1, 1], "speech": [3, 7], "music": [1, 1]}
        self.noiselist = {}
        for f in glob.glob(os.path.join(musan_path, "*/*.wav")):
            self.noiselist.setdefault(f.split("/")[-2], []).append(f)
        self.rir_files = glob.glob(os.path.join(rir_path, "*.wav"))

    def additive_noise(self, noisecat, audio):
        clean_db = 10 * np.log10(np.mean(audio ** 2) + 1e-4)
        numnoise = self.numnoise[noisecat]
        noiselist = random.sample(self.noiselist[noisecat], random.randint(numnoise[0], numnoise[1]))
        noises = []
        for noise in noiselist:
            noiseaudio = vt_load_wav(noise, self.max_frames)
            noise_snr = random.uniform(self.noisesnr[noisecat][0], self.noisesnr[noisecat][1])
            noise_db = 10 * np.log10(np.mean(noiseaudio[0] ** 2) + 1e-4)
            noises.append(np.sqrt(10 ** ((clean_db - noise_db - noise_snr) / 10)) * noiseaudio)
        return np.sum(np.concatenate(noises, axis=0), axis=0, keepdims=True) + audio

    def reverberate(self, audio):
        from scipy import signal

        rir, _ = sf.read(random.choice(self.rir_files))
        rir = np.expand_dims(rir.astype(float), 0)
        rir = rir / np.sqrt(np.sum(rir ** 2))
        return signal.convolve(audio, rir, mode="full")[:, :self.max_audio]


class VTDataset(torch.utils.data.Dataset):
    def __init__(self, files, augment, musan, rirs):
        self.files, self.augment = files, augment
        self.aug = VTAugmentWAV(str(musan), str(rirs), FRAMES) if augment else None

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        audio = vt_load_wav(self.files[i], FRAMES)
        if self.augment:
            augtype = random.randint(0, 4)
            if augtype == 1:
                audio = self.aug.reverberate(audio)
            elif augtype == 2:
                audio = self.aug.additive_noise("music", audio)
            elif augtype == 3:
                audio = self.aug.additive_noise("speech", audio)
            elif augtype == 4:
                audio = self.aug.additive_noise("noise", audio)
        return torch.FloatTensor(audio), 0


# ----------------------------------------------------------------------------- measuring

def _worker_init(_):
    torch.set_num_threads(1)


def rate(loader, batches: int, finish=None) -> float:
    it = iter(loader)
    first = next(it)  # workers started, warm
    if finish is not None:
        finish(first)
    t0, n = time.perf_counter(), 0
    for _ in range(batches):
        b = next(it)
        out = finish(b) if finish is not None else b
        n += int(out[0].shape[0])
    return n / (time.perf_counter() - t0)


def pyspeaker_case(data: dict, case: str, batches: int, workers: int, tmp: Path) -> float:
    from pyspeaker.training.config import load_config
    from pyspeaker.training.data import CropDataset, load_train_data

    if case == "store":
        class Store:  # the in-memory layout of a loaded FeatureStore
            pass

        n = data["utts"]
        rng = np.random.default_rng(1)
        s = Store()
        s.ids = [f"u{i:05d}" for i in range(n)]
        s.lengths = rng.integers(300, 800, n)
        s.offsets = np.r_[0, np.cumsum(s.lengths)]
        s._data = rng.normal(size=(int(s.offsets[-1]), 40)).astype(np.float32)
        s.dir = tmp
        s.__len__ = None
        ds = CropDataset.__new__(CropDataset)
        ds.store, ds.crop, ds.seed, ds.epoch = s, FRAMES, 0, 0
        ds.labels = np.arange(n) % 50
        sampler = [list(range(b * BATCH, (b + 1) * BATCH)) for b in range(batches + 1)]
        sampler = [[i % n for i in b] for b in sampler]
        loader = torch.utils.data.DataLoader(ds, sampler=sampler, batch_size=None, num_workers=0)
        return rate(loader, batches)
    sets = [f"data.feat_conf={REPO / 'conf' / 'fbank.conf'}", f"augment.bank_dir={tmp / 'banks'}"]
    if case == "augmented":
        sets += [f"augment.noise_dir={data['musan']}", f"augment.rir_dir={data['rirs']}", "augment.prob=1.0",
                 "augment.speed_perturb=true", "augment.specaugment=true"]
    cfg = load_config(None, sets)
    td = load_train_data(cfg, data_dir=data["train"])
    n = len(td.dataset)
    rng = np.random.default_rng(2)
    sampler = [rng.integers(0, n, BATCH).tolist() for _ in range(batches + 1)]
    loader = torch.utils.data.DataLoader(td.dataset, sampler=sampler, batch_size=None, num_workers=workers,
                                         worker_init_fn=_worker_init, prefetch_factor=4 if workers else None)
    return rate(td.on_device(loader, "cpu"), batches)


def vt_case(data: dict, augment: bool, batches: int, workers: int) -> float:
    files = [line.split()[1] for line in (data["train"] / "wav.scp").read_text().splitlines()]
    ds = VTDataset(files, augment, data["musan"], data["rirs"])
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=(batches + 1) * BATCH)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, sampler=sampler, num_workers=workers,
                                         worker_init_fn=_worker_init, drop_last=True)
    return rate(loader, batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run (under a minute)")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    batches = 3 if args.quick else args.batches
    results = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = make_data(tmp, 200 if args.quick else 2000)
        results["store"] = pyspeaker_case(data, "store", batches * 10, args.workers, tmp)
        results["audio"] = pyspeaker_case(data, "audio", batches, args.workers, tmp)
        results["augmented"] = pyspeaker_case(data, "augmented", batches, args.workers, tmp)
        results["vt-audio"] = vt_case(data, False, batches, args.workers)
        results["vt-augmented"] = vt_case(data, True, batches, args.workers)
    print("| case | pyspeaker crops/s | voxceleb_trainer crops/s | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| (a) feature store | {results['store']:.0f} | | target >= 20000 |")
    for case, vt in (("audio", "vt-audio"), ("augmented", "vt-augmented")):
        print(f"| ({'b' if case == 'audio' else 'c'}) {case} | {results[case]:.0f} | {results[vt]:.0f} | "
              f"{results[case] / results[vt]:.2f}x |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"workers": args.workers, "batch": BATCH, "frames": FRAMES,
                                        "crops_per_s": results}, indent=1))


if __name__ == "__main__":
    main()
