#!/usr/bin/env python
"""Loader throughput: crops per second of the training data path, pyspeaker vs. voxceleb_trainer's
own loader and augmentation code (DatasetLoader.py, imported from a work tree of its repository),
in the same run on generated data. No network is trained.

Cases (2 s crops, 200 frames, batches of 64, DataLoader workers as --workers, 1 torch thread each;
each figure the median of --repeats fresh loaders, the loader-only ones over 5x --batches):
  store       pyspeaker's feature store (in memory): CropDataset's one-gather batches.
  audio       crops read from WAVs by seeking, or sliced from the memory-mapped data.audio_bank.
              "loader": what the DataLoader workers hand over (raw crops; the fbank is made on the
              training device). "CPU path": the same plus the batched fbank of conf/fbank.conf in
              the main process, as training on a CPU does.
  augmented   audio + MUSAN-layout noise/music/babble + RIR reverberation (--aug-prob, default
              0.8: voxceleb_trainer's mix, where one draw of five is "none" and the four kinds are
              equally likely, so both sides do the same augmentation work; 1.0: every crop)
              + speed perturbation 0.9/1.0/1.1 + SpecAugment: the loader draws the augmentation and
              gathers noise mixes and RIRs from the memory-mapped banks; mixing, FFT
              reverberation, resampling, fbank and masks run in BatchAugmenter (CPU path only).
  vt-audio    voxceleb_trainer's train_dataset_loader (augment off): soundfile.read of the whole
              file (float64), wrap-pad, random crop, per crop. "+ front-end": its ResNetSE34L's
              MelSpectrogram + log + InstanceNorm on the batch (its features live in the network).
  vt-augmented  the same with its AugmentWAV: per crop one of none / reverb / music / speech /
              noise, each noise and RIR file read per crop, numpy SNR scaling, scipy convolution.
              (It has no speed perturbation or SpecAugment.)

The loader rows are the data path that has to keep a GPU fed (on CUDA the rest runs there); the CPU
rows are what a CPU-only run spends per crop besides the network.

--train-wait: also `pyspeaker train` ResNetSE34L + AM-softmax for 2 short epochs from the augmented
audio (audio bank, the workers, the batched path on the CPU) and report the data-wait share of the
last epoch, as train.log and metrics.tsv give it.

Usage: python bench/loader_throughput.py --vt-dir DIR [--train-wait] [--quick] [--batches 30] [--workers 2]
                                         [--out FILE.json]
  DIR: a work tree of https://github.com/clovaai/voxceleb_trainer (without it, its rows are skipped).
"""
from __future__ import annotations

import argparse
import json
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
AUG_PROB = 0.8  # --aug-prob


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
    # the layouts voxceleb_trainer's globs expect (musan_split/<kind>/<source>/<id>/*.wav,
    # simulated_rirs/<room>/<id>/*.wav); pyspeaker finds the kind from the folder names
    musan = root / "musan"
    for kind, count, secs in (("noise", 20, 8), ("music", 10, 30), ("speech", 20, 20)):
        for i in range(count):
            d = musan / kind / "b" / f"{kind}-b-{i:04d}"
            d.mkdir(parents=True)
            sf.write(d / "00000.wav", rng.normal(0, 0.1, SR * secs).astype(np.float32), SR, subtype="PCM_16")
    rirs = root / "rirs"
    for i in range(20):
        n = SR // 2
        d = rirs / "smallroom" / f"Room{i:03d}"
        d.mkdir(parents=True)
        sf.write(d / "Room-00001.wav", (rng.normal(0, 1, n) * np.exp(-np.arange(n) / 1500)).astype(np.float32), SR)
    (root / "train_list.txt").write_text("".join(f"{line.split('-')[0]} {line.split()[1]}\n" for line in wav))
    return {"train": train, "musan": musan, "rirs": rirs, "utts": utts, "list": root / "train_list.txt"}


# ----------------------------------------------------------------------------- voxceleb_trainer's own code

def vt_modules(vt_dir: Path):
    """DatasetLoader and models.ResNetSE34L of the voxceleb_trainer work tree ``vt_dir``."""
    import importlib

    if not (vt_dir / "DatasetLoader.py").is_file():
        sys.exit(f"--vt-dir {vt_dir}: no DatasetLoader.py there (give a work tree of clovaai/voxceleb_trainer)")
    sys.path.insert(0, str(vt_dir))
    return importlib.import_module("DatasetLoader"), importlib.import_module("models.ResNetSE34L")


class OneEach(torch.utils.data.Sampler):
    """voxceleb_trainer's sampler with nPerSpeaker 1: each item a list of one index."""

    def __init__(self, n: int, count: int):
        self.n, self.count = n, count

    def __iter__(self):
        rng = np.random.default_rng(3)
        return iter([[int(i)] for i in rng.integers(0, self.n, self.count)])

    def __len__(self):
        return self.count


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


def pyspeaker_case(data: dict, case: str, batches: int, workers: int, tmp: Path, loader_only: bool = False,
                   bank: bool = False) -> float:
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
        sets += [f"augment.noise_dir={data['musan']}", f"augment.rir_dir={data['rirs']}", f"augment.prob={AUG_PROB}",
                 "augment.speed_perturb=true", "augment.specaugment=true"]
    cfg = load_config(None, sets + (["data.audio_bank=true"] if bank else []))
    td = load_train_data(cfg, data_dir=data["train"])
    n = len(td.dataset)
    rng = np.random.default_rng(2)
    sampler = [rng.integers(0, n, BATCH).tolist() for _ in range(batches + 1)]
    loader = torch.utils.data.DataLoader(td.dataset, sampler=sampler, batch_size=None, num_workers=workers,
                                         worker_init_fn=_worker_init, prefetch_factor=4 if workers else None)
    on_cpu = td.on_device(loader, "cpu")  # the workers now hand over RawBatches
    return rate(loader, batches, lambda b: (b.labels,)) if loader_only else rate(on_cpu, batches)


def vt_case(data: dict, vt, augment: bool, batches: int, workers: int, front_end: bool) -> float:
    loader_mod, resnet = vt
    ds = loader_mod.train_dataset_loader(train_list=str(data["list"]), augment=augment, musan_path=str(data["musan"]),
                                         rir_path=str(data["rirs"]), max_frames=FRAMES, train_path="/")
    def init(worker_id):
        _worker_init(worker_id)
        loader_mod.worker_init_fn(worker_id)

    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, sampler=OneEach(len(ds), (batches + 1) * BATCH),
                                         num_workers=workers, worker_init_fn=init, drop_last=True,
                                         prefetch_factor=4 if workers else None)
    finish = None
    if front_end:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # it prints its embedding size
            model = resnet.MainModel(nOut=512, encoder_type="SAP", n_mels=40, log_input=True)

        def finish(b):
            with torch.no_grad():  # ResNetSE34L.forward's first lines
                x = model.torchfb(b[0].reshape(-1, b[0].shape[-1])) + 1e-6
                return (model.instancenorm(x.log()),)
    return rate(loader, batches, finish)


def train_wait(data: dict, tmp: Path, workers: int, batch: int, epochs: int) -> dict:
    """``pyspeaker train`` of ResNetSE34L + AM-softmax from the augmented audio (audio bank,
    ``workers`` loader workers, the batched augmentation on the CPU): crops/s and the data-wait
    share of its last epoch, from metrics.tsv."""
    import subprocess

    exp = tmp / "train-wait"
    sets = [f"data.feat_conf={REPO / 'conf' / 'fbank.conf'}", f"augment.bank_dir={tmp / 'banks'}",
            f"augment.noise_dir={data['musan']}", f"augment.rir_dir={data['rirs']}", f"augment.prob={AUG_PROB}",
            "augment.speed_perturb=true", "augment.specaugment=true", "data.audio_bank=true",
            f"data.num_workers={workers}", f"data.batch_size={batch}", "data.max_seg_per_spk=2",
            f"train.max_epoch={epochs}", "train.device=cpu"]
    cmd = [sys.executable, "-m", "pyspeaker", "train", "--config", str(REPO / "conf" / "resnet34l_amsoftmax.yaml"),
           "--data-dir", str(data["train"]), "--exp-dir", str(exp), "--no-progress"]
    for item in sets:
        cmd += ["--set", item]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    head, *rows = (exp / "metrics.tsv").read_text().splitlines()
    last = dict(zip(head.split("\t"), rows[-1].split("\t")))
    return {"crops_per_s": float(last["crops_per_s"]), "data_wait_pct": float(last["data_wait_pct"]),
            "epochs": len(rows), "batch": batch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run (under a minute)")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--aug-prob", type=float, default=0.8,
                    help="pyspeaker's augment.prob (0.8 = voxceleb_trainer's share of augmented crops)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh loaders per figure (the median is reported)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--vt-dir", type=Path, default=None, help="a work tree of clovaai/voxceleb_trainer")
    ap.add_argument("--train-wait", action="store_true",
                    help="also train ResNetSE34L from the augmented audio and report its data-wait share")
    args = ap.parse_args()
    global AUG_PROB
    AUG_PROB = args.aug_prob
    torch.set_num_threads(2)
    batches = 3 if args.quick else args.batches
    vt = vt_modules(args.vt_dir.resolve()) if args.vt_dir else None
    r = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = make_data(tmp, 200 if args.quick else 2000)
        # each figure: the median of --repeats fresh loaders (a window of a few hundred ms swings 2x)
        def median(fn, *a, **k):
            return float(np.median([fn(*a, **k) for _ in range(args.repeats)]))

        r["store"] = median(pyspeaker_case, data, "store", batches * 10, args.workers, tmp)
        for case in ("audio", "augmented"):
            long = batches * 5  # the loader-only cases are fast: more batches for a steady window
            r[f"{case}-loader"] = median(pyspeaker_case, data, case, long, args.workers, tmp, loader_only=True)
            r[f"{case}-loader-bank"] = median(pyspeaker_case, data, case, long, args.workers, tmp, loader_only=True,
                                              bank=True)
            r[f"{case}-cpu"] = median(pyspeaker_case, data, case, batches, args.workers, tmp, bank=True)
            if vt is not None:
                r[f"vt-{case}"] = median(vt_case, data, vt, case == "augmented", long, args.workers, front_end=False)
                r[f"vt-{case}-fe"] = median(vt_case, data, vt, case == "augmented", batches, args.workers,
                                            front_end=True)
        if args.train_wait:
            r["train-wait"] = train_wait(data, tmp, args.workers, 16 if args.quick else 50, 1 if args.quick else 2)
    print("| case | pyspeaker crops/s | voxceleb_trainer crops/s | ratio |")
    print("|---|---:|---:|---:|")
    met = "met" if r["store"] >= 20000 else "NOT met"
    print(f"| (a) feature store | {r['store']:,.0f} | | target >= 20,000: {met} |")
    for case, label in (("audio", "(b) audio, no augmentation"),
                        ("augmented", "(c) audio + noise + RIR + speed + SpecAugment")):
        for side, what, peer in (("loader", "loader, crops read from the files", f"vt-{case}"),
                                 ("loader-bank", "loader, crops from data.audio_bank", f"vt-{case}"),
                                 ("cpu", "CPU path (audio bank + fbank; vs. its loader + front-end)", f"vt-{case}-fe")):
            mine = r[f"{case}-{side}"]
            if peer in r:
                ratio = f"{mine / r[peer]:.2f}x"
                if case == "augmented" and side.startswith("loader"):
                    ratio += f" (target >= 5x: {'met' if mine >= 5 * r[peer] else 'NOT met'})"
                print(f"| {label}, {what} | {mine:,.0f} | {r[peer]:,.0f} | {ratio} |")
            else:
                print(f"| {label}, {what} | {mine:,.0f} | (no --vt-dir) | |")
    if "train-wait" in r:
        t = r["train-wait"]
        print(f"\nResNetSE34L training from the augmented audio ({args.workers} workers, batch {t['batch']}, epoch "
              f"{t['epochs']}): {t['crops_per_s']:.1f} crops/s, data wait {t['data_wait_pct']:.1f} % "
              f"(target < 5 %: {'met' if t['data_wait_pct'] < 5 else 'NOT met'})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"workers": args.workers, "batch": BATCH, "frames": FRAMES,
                                        "crops_per_s": r}, indent=1))


if __name__ == "__main__":
    main()
