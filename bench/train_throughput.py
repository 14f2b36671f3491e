#!/usr/bin/env python
"""Training throughput: crops per second and peak memory, pyspeaker vs. a voxceleb_trainer baseline.

Setting (the issue's): ResNetSE34L + SAP, nOut 512, 40 mel bins, AM-softmax (scale 30, margin 0.3),
2 s crops (200 frames), batch 32, CPU, 2 torch threads, Adam. Every variant runs in its own fresh
process. Peak memory is the largest proportional set size (PSS) of the process and its DataLoader
workers together, sampled every 0.1 s (shared pages counted once), next to the main process's
ru_maxrss. The variants are interleaved, and each one's best window of steps over the rounds is
reported with the median: the machine is shared, so the best of several short windows is the
least disturbed figure.

Variants:
  baseline   voxceleb_trainer's training step, re-implemented: its DataLoader (5 workers, the
             default nDataLoaderThread) reads each WAV with soundfile.read (float64), pads short
             files by wrapping, takes a random crop of 32240 samples; the network has the
             waveform front-end inside (torchaudio MelSpectrogram, log, instance norm) and the
             same ResNetSE34L; data [batch, nPerSpeaker, samples] is reshaped for the model and
             the output reshaped back; Adam with PyTorch's CPU defaults.
  baseline-passive   the baseline with OMP_WAIT_POLICY=PASSIVE, to show how much of the
             difference is that setting alone (``pyspeaker train`` sets it; the pyspeaker
             variants below run with it).
  store      pyspeaker from the feature store (HDF5 log-mel, in memory): batch crops gathered in
             one numpy index operation, SpeakerNet + the trainer's CPU settings (channels_last,
             denormals flushed).
  audio      pyspeaker from audio: the same WAVs, random crops read by seeking (no full decode),
             log-mel (conf/logmel.conf, voxceleb_trainer's front-end) computed in 1 DataLoader
             worker, batched per step.
  waveform   pyspeaker from audio with the network's own waveform front-end (model.waveform):
             identical network and inputs to the baseline, pyspeaker's data path and step.

Usage: python bench/train_throughput.py [--rounds 3] [--windows 2] [--steps 6]
                                        [--out bench/results/train_throughput.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH, FRAMES, N_MELS, THREADS = 32, 200, 40, 2
SPEAKERS, UTTS, SECONDS = 40, 4, (3.0, 6.0)


# ----------------------------------------------------------------------------- data

def make_data(root: Path) -> dict:
    """40 speakers x 4 WAVs of 3-6 s (16 kHz) + a data dir, a voxceleb_trainer train list and a store."""
    import numpy as np
    import soundfile as sf

    from pyspeaker.features import FeatureExtractor, load_feature_config
    from pyspeaker.store.features import FeatureStoreWriter

    rng = np.random.default_rng(0)
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    utt2spk, wav_scp = {}, {}
    for s in range(SPEAKERS):
        f0 = 80 + 5 * s
        for u in range(UTTS):
            n = int(16000 * rng.uniform(*SECONDS))
            t = np.arange(n) / 16000
            x = sum(np.sin(2 * np.pi * f0 * (k + 1) * t) / (k + 1) for k in range(10)) * 0.1
            x = (x + 0.01 * rng.normal(size=n)).astype(np.float32)
            utt = f"spk{s:03d}-{u:02d}"
            sf.write(wav_dir / f"{utt}.wav", x, 16000, subtype="PCM_16")
            utt2spk[utt], wav_scp[utt] = f"spk{s:03d}", str(wav_dir / f"{utt}.wav")
    data = root / "data"
    data.mkdir(exist_ok=True)
    (data / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(wav_scp.items())))
    (data / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    spk2utt: dict[str, list[str]] = {}
    for u, s in sorted(utt2spk.items()):
        spk2utt.setdefault(s, []).append(u)
    (data / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in spk2utt.items()))
    (root / "train_list.txt").write_text("".join(f"{s} {u}.wav\n" for u, s in sorted(utt2spk.items())))
    store = root / "store"
    store.mkdir(exist_ok=True)
    cfg = load_feature_config(REPO / "conf" / "logmel.conf")
    extract = FeatureExtractor(cfg)
    import soundfile as sf2

    with FeatureStoreWriter(store / "feats.h5", cfg.dim, {"feat_id": cfg.feat_id(), "config": json.dumps(cfg.to_dict())}) as w:
        for utt in sorted(wav_scp):
            x, sr = sf2.read(wav_scp[utt], dtype="float32")
            w.add(utt, extract(x, sr))
    (store / "utt2spk").write_text((data / "utt2spk").read_text())
    return {"root": str(root), "data": str(data), "store": str(store), "wav_dir": str(wav_dir),
            "train_list": str(root / "train_list.txt")}


# ----------------------------------------------------------------------------- the baseline

def baseline_loader(paths: dict, workers: int = 5):
    """voxceleb_trainer's train_dataset_loader + train_dataset_sampler + DataLoader, re-implemented."""
    import random

    import numpy as np
    import soundfile
    import torch

    max_audio = FRAMES * 160 + 240

    def load_wav(filename):
        audio, _ = soundfile.read(filename)  # float64, as voxceleb_trainer
        if audio.shape[0] <= max_audio:
            audio = np.pad(audio, (0, max_audio - audio.shape[0] + 1), "wrap")
        start = np.int64(random.random() * (audio.shape[0] - max_audio))
        return np.stack([audio[int(start):int(start) + max_audio]], axis=0)

    class Dataset(torch.utils.data.Dataset):
        def __init__(self):
            lines = Path(paths["train_list"]).read_text().splitlines()
            keys = {k: i for i, k in enumerate(sorted({x.split()[0] for x in lines}))}
            self.data_list = [os.path.join(paths["wav_dir"], x.split()[1]) for x in lines]
            self.data_label = [keys[x.split()[0]] for x in lines]

        def __getitem__(self, indices):
            feat = np.concatenate([load_wav(self.data_list[i]) for i in indices], axis=0)
            return torch.FloatTensor(feat), self.data_label[indices[0]]

        def __len__(self):
            return len(self.data_list)

    class Sampler(torch.utils.data.Sampler):
        def __init__(self, ds):
            self.labels = ds.data_label
            self.epoch = 0

        def __iter__(self):
            g = torch.Generator()
            g.manual_seed(self.epoch)
            order = torch.randperm(len(self.labels), generator=g).tolist()
            by_spk: dict[int, list[int]] = {}
            for i in order:
                by_spk.setdefault(self.labels[i], []).append(i)
            flat, flat_lab = [], []
            for k in sorted(by_spk):
                for i in by_spk[k]:
                    flat.append([i])
                    flat_lab.append(k)
            mix = torch.randperm(len(flat_lab), generator=g).tolist()
            out, lab = [], []
            for ii in mix:  # no speaker twice in a batch (the greedy pass)
                start = len(lab) - len(lab) % BATCH
                if flat_lab[ii] not in lab[start:]:
                    lab.append(flat_lab[ii])
                    out.append(flat[ii])
            return iter(out[:len(out) - len(out) % BATCH])

        def __len__(self):
            return len(self.labels)

    ds = Dataset()

    def worker_init_fn(worker_id):
        np.random.seed(np.random.get_state()[1][0] + worker_id)

    sampler = Sampler(ds)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=workers, pin_memory=False,
                                         sampler=sampler, worker_init_fn=worker_init_fn, drop_last=True)
    return loader, sampler, len(set(ds.data_label))


def run_baseline(paths: dict, steps: int, windows: int) -> list[float]:
    import torch

    from pyspeaker.losses import build_loss
    from pyspeaker.models import build_model

    loader, sampler, n_classes = baseline_loader(paths)
    model = build_model("ResNetSE34L", nOut=512, encoder_type="SAP", n_mels=N_MELS, waveform=True, log_input=True)
    loss_fn = build_loss("amsoftmax", 512, n_classes, margin=0.3, scale=30)
    opt = torch.optim.Adam(list(model.parameters()) + list(loss_fn.parameters()), lr=0.001)
    model.train()

    def batches():
        epoch = 0
        while True:
            sampler.epoch = epoch
            yield from loader
            epoch += 1

    def step(data, label):
        data = data.transpose(1, 0)  # voxceleb_trainer: [nPerSpeaker, batch, samples]
        out = model(data.reshape(-1, data.size()[-1]))
        out = out.reshape(1, -1, out.size()[-1]).transpose(1, 0).squeeze(1)
        loss, _ = loss_fn(out, label)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return _time_windows(batches(), step, steps, windows)


# ----------------------------------------------------------------------------- pyspeaker

def run_pyspeaker(paths: dict, variant: str, steps: int, windows: int) -> list[float]:
    import torch

    from pyspeaker.losses import build_loss
    from pyspeaker.models import build_model
    from pyspeaker.training.config import load_config
    from pyspeaker.training.data import load_train_data
    from pyspeaker.training.sampler import SpeakerBatchSampler
    from pyspeaker.training.step import SpeakerNet, make_optimizer, model_options, prepare_cpu

    sets = [f"data.batch_size={BATCH}", f"data.crop_frames={FRAMES}", "loss.margin=0.3", "loss.scale=30",
            "train.device=cpu"]
    if variant == "store":
        features, data_dir = paths["store"], None
    else:
        features, data_dir = None, paths["data"]
        sets.append("data.num_workers=1")
        if variant == "audio":
            sets.append(f"data.feat_conf={REPO / 'conf' / 'logmel.conf'}")
        else:
            sets += ["model.waveform=true", "model.log_input=true", f"model.n_mels={N_MELS}"]
    cfg = load_config(REPO / "conf" / "resnet34l_amsoftmax.yaml", sets)
    data = load_train_data(cfg, features, data_dir)
    model = build_model(**model_options(cfg, data.feat_dim))
    loss_fn = build_loss(nOut=512, num_classes=len(data.speakers), **cfg["loss"])
    prepare_cpu(cfg, model)
    net = SpeakerNet(model, loss_fn)
    opt = make_optimizer(cfg, list(model.parameters()) + list(loss_fn.parameters()))
    sampler = SpeakerBatchSampler(data.labels, BATCH, 1, seed=0)
    net.train()

    def batches():
        epoch = 1
        while True:
            data.dataset.set_epoch(epoch)
            yield from torch.utils.data.DataLoader(data.dataset, sampler=sampler.batches(epoch), batch_size=None,
                                                   num_workers=int(cfg["data"]["num_workers"]))
            epoch += 1

    def step(inputs, labels):
        loss, _ = net(inputs, labels, 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _time_windows(batches(), step, steps, windows)


def _time_windows(batches, step, steps: int, windows: int) -> list[float]:
    """crops/s of ``windows`` windows of ``steps`` steps each, after 2 warm-up steps."""
    it = iter(batches)
    for _ in range(2):
        step(*next(it))
    rates = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(steps):
            step(*next(it))
        rates.append(BATCH * steps / (time.perf_counter() - t0))
    return rates


def _tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and its descendants (shared pages counted once)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in open(f"/proc/{p}/task/{task}/children").read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


class _PeakPss:
    """Samples the process tree's PSS every 0.1 s in a thread; ``peak`` is the largest seen."""

    def __init__(self):
        import threading

        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, _tree_pss_mb(os.getpid()))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def child(variant: str, paths: dict, steps: int, windows: int) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    t0 = time.time()
    pss = _PeakPss()
    rates = run_baseline(paths, steps, windows) if variant.startswith("baseline") else \
        run_pyspeaker(paths, variant, steps, windows)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"variant": variant, "crops_per_s": rates, "peak_rss_mb": own, "peak_worker_rss_mb": kids,
            "peak_total_pss_mb": pss.stop(), "seconds": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per variant (interleaved)")
    ap.add_argument("--steps", type=int, default=6, help="steps per timed window")
    ap.add_argument("--windows", type=int, default=2, help="timed windows per process")
    ap.add_argument("--variants", default="baseline,baseline-passive,store,audio,waveform")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "train_throughput.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--paths", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, json.loads(args.paths), args.steps, args.windows)))
        return
    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory(prefix="train_bench_") as tmp:
        paths = make_data(Path(tmp))
        results: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for v in variants:
                load = os.getloadavg()[0]
                env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
                env.pop("OMP_WAIT_POLICY", None)
                if v != "baseline":  # what `pyspeaker train` sets before torch loads OpenMP
                    env["OMP_WAIT_POLICY"] = "PASSIVE"
                out = subprocess.run([sys.executable, __file__, "--child", v, "--paths", json.dumps(paths),
                                      "--steps", str(args.steps), "--windows", str(args.windows)],
                                     capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    sys.exit(f"{v} failed:\n{out.stderr[-3000:]}")
                res = json.loads(out.stdout.strip().splitlines()[-1])
                res["load_before"] = load
                results[v].append(res)
                print(f"round {r + 1} {v:16s} best {max(res['crops_per_s']):6.1f} crops/s  "
                      f"(windows {', '.join(f'{x:.1f}' for x in res['crops_per_s'])}; load {load:.2f})  "
                      f"peak RSS {res['peak_rss_mb']:.0f} MB, worker {res['peak_worker_rss_mb']:.0f} MB, "
                      f"all processes {res['peak_total_pss_mb']:.0f} MB", flush=True)
    summary = {}
    for v, runs in results.items():
        summary[v] = {"best_crops_per_s": max(max(r["crops_per_s"]) for r in runs),
                      "median_crops_per_s": sorted(x for r in runs for x in r["crops_per_s"])[
                          len(runs) * len(runs[0]["crops_per_s"]) // 2],
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                      "peak_total_pss_mb": max(r["peak_total_pss_mb"] for r in runs),
                      "peak_worker_rss_mb": max(r["peak_worker_rss_mb"] for r in runs)}
    print("\nResNetSE34L + SAP, AM-softmax, batch 32 x 2 s crops, CPU, 2 threads "
          f"({args.rounds} rounds x {args.windows} windows of {args.steps} steps; best window):")
    base = summary.get("baseline", {}).get("best_crops_per_s")
    for v, s in summary.items():
        ratio = f"  {s['best_crops_per_s'] / base:.2f}x baseline" if base and v != "baseline" else ""
        print(f"  {v:16s} {s['best_crops_per_s']:6.1f} crops/s (median {s['median_crops_per_s']:.1f})  "
              f"peak memory {s['peak_total_pss_mb']:.0f} MB (PSS, all processes; main RSS {s['peak_rss_mb']:.0f} MB)"
              f"{ratio}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"setting": {"model": "ResNetSE34L", "encoder": "SAP", "batch": BATCH, "frames": FRAMES,
                                           "threads": THREADS, "rounds": args.rounds, "steps": args.steps,
                                           "windows": args.windows, "cpu_count": os.cpu_count()},
                               "summary": summary, "runs": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
