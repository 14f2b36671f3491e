#!/usr/bin/env python
"""Embedding throughput and latency on CPU: pyspeaker against the toolkits its networks come from.

Setting: CPU only, torch threads fixed (--threads, default 2; ONNX Runtime gets the same number
of intra-op threads), one process, real speech: --files FSDD recordings (8 kHz, taken evenly
over the sorted corpus, so all speakers and digits; about 0.44 s each) and --long 10 s
concatenations of one speaker's recordings. Every file is resampled to 16 kHz once up front
(torchaudio's sinc resampler) and written as 16-bit PCM WAV, so every variant reads the same
files, and file reading is part of what is timed.

Measured per variant: throughput over each set (utterances/s, and the real-time factor RTF =
processing seconds / audio seconds, of the utterances' own audio, not of the crops), as the
best of --rounds passes (variants interleaved within a round, the median next to it: the
machine is shared, so the best pass is the least disturbed figure), after a warm-up on three
files; then single-utterance latency, the median and p90 of --latency-calls calls on one 10 s
utterance after warm-up. Embeddings are compared with the variant's peer (max abs difference
over all files of both sets).

Variants (the network is voxceleb_trainer's ResNetSE34L + SAP, angleproto, nOut 512, 40 mel,
log_input, the real checkpoint in ../shared/compat/voxceleb_trainer/fixture_ResNetSE34L/):
  vt          voxceleb_trainer's evaluateFromList, re-implemented: a DataLoader (batch 1,
              --vt-workers workers, its default nDataLoaderThread 5, made once per pass as
              evaluateFromList makes it) whose dataset runs loadWAV(evalmode=True, num_eval=10):
              soundfile.read (float64), wrap-pad a file no longer than the crop to crop + 1
              samples, 10 crops of eval_frames 300 (48240 samples) at int(linspace(0, len - crop,
              10)), then one forward of the [10, 48240] batch per file; the output [10, 512] are the
              file's embeddings. The network is pyspeaker.compat.voxceleb_trainer.load_model's
              (voxceleb_trainer's layer order and front-end). The source toolkit.
  vt-inline   the same without DataLoader workers (loadWAV in the main process, one file at a
              time). The faster of vt / vt-inline is the baseline of the ratios.
  crop        pyspeaker crop mode, the same checkpoint imported (import_model("voxceleb_trainer")
              + write_model_dir) and load_model(dir, eval_frames=300): SpeakerModel.embed_crops,
              one file at a time. Its embeddings must equal vt's (max abs diff <= 1e-4).
  crop-distinct, crop-distinct-batched   the bench's own code: a file shorter than the crop is
              padded to crop + 1 samples, so its 10 crops start at 0 (9 times) and 1: only 2
              distinct crops. These run each distinct crop once and copy its embedding to the
              repeated rows, as embed_crops itself now does (crop-distinct is its peer); -batched
              also puts the distinct crops of several files (up to --batch-crops) into one forward,
              which pyspeaker does not do.
  eager       pyspeaker whole utterance: load_model(dir).embed (one forward of the whole file).
  torchscript export_model(..., "torchscript", with_frontend=True) loaded with load_model(file).
  onnx        export_model(..., "onnx", with_frontend=True) to .onnx, load_model(file) (ONNX
              Runtime, CPUExecutionProvider). eager is the peer of both (within 1e-4).
  resemblyzer, rz-pyspeaker   when resemblyzer is installed: VoiceEncoder("cpu").embed_utterance
              on the file's samples (read with soundfile) against import_model("resemblyzer") +
              write_model_dir + load_model(dir).embed; L2-normalised embeddings compared.

Ratios: pyspeaker / its source toolkit on the same network (crop and the proposed crop variants
vs the faster vt form; rz-pyspeaker vs resemblyzer), torchscript / eager and onnx / eager, on
throughput and on median latency. Targets: pyspeaker >= 2x the source toolkit's CPU throughput
at equal embeddings; ONNX Runtime not slower than eager.

Usage: python bench/embed_latency.py [--threads 2] [--files 200] [--long 20] [--latency-calls 30]
           [--rounds 2] [--out bench/results/embed_latency.json] [--no-results-md] [--quick]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared"
FSDD = SHARED / "corpora" / "fsdd" / "recordings"
FIXTURE = SHARED / "compat" / "voxceleb_trainer" / "fixture_ResNetSE34L" / "ResNetSE34L_SAP_angleproto.model"
VT_SETTINGS = {"model": "ResNetSE34L", "encoder_type": "SAP", "nOut": 512, "n_mels": 40, "log_input": True}
EVAL_FRAMES, NUM_EVAL, SR, LONG_SECONDS = 300, 10, 16000, 10.0
SECTION = "## Embedding latency (`bench/embed_latency.py`"


# ----------------------------------------------------------------------------- data

def make_data(root: Path, n_files: int, n_long: int) -> dict:
    """16 kHz PCM WAVs: ``n_files`` FSDD recordings and ``n_long`` 10 s one-speaker concatenations."""
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    corpus = sorted(FSDD.glob("*.wav"))
    if not corpus:
        raise SystemExit(f"no FSDD recordings in {FSDD}")

    def read16k(path: Path) -> np.ndarray:
        x, rate = sf.read(path, dtype="float32")
        return AF.resample(torch.from_numpy(x), rate, SR).numpy() if rate != SR else x

    short_dir, long_dir = root / "fsdd", root / "long"
    short_dir.mkdir(parents=True)
    long_dir.mkdir()
    pick = np.unique(np.linspace(0, len(corpus) - 1, num=min(n_files, len(corpus))).astype(int))
    short = []
    for i in pick:
        out = short_dir / corpus[i].name
        sf.write(out, read16k(corpus[i]), SR, subtype="PCM_16")
        short.append(str(out))
    by_speaker: dict[str, list[Path]] = {}
    for p in corpus:  # FSDD names: <digit>_<speaker>_<index>.wav
        by_speaker.setdefault(p.stem.split("_")[1], []).append(p)
    for files in by_speaker.values():
        files.sort(key=lambda p: (int(p.stem.split("_")[2]), int(p.stem.split("_")[0])))
    speakers, cursor, long = sorted(by_speaker), {s: 0 for s in by_speaker}, []
    need = int(LONG_SECONDS * SR)
    for k in range(n_long):
        spk = speakers[k % len(speakers)]
        parts, total = [], 0
        while total < need:
            wav = read16k(by_speaker[spk][cursor[spk] % len(by_speaker[spk])])
            cursor[spk] += 1
            parts.append(wav)
            total += len(wav)
        out = long_dir / f"{spk}_long{k:02d}.wav"
        sf.write(out, np.concatenate(parts)[:need], SR, subtype="PCM_16")
        long.append(str(out))
    seconds = lambda paths: float(sum(sf.info(p).frames for p in paths)) / SR
    return {"fsdd": short, "long": long, "seconds": {"fsdd": seconds(short), "long": seconds(long)}}


# ----------------------------------------------------------------------------- variants

def vt_load_wav(filename: str, max_frames: int, num_eval: int = NUM_EVAL) -> np.ndarray:
    """voxceleb_trainer's loadWAV(filename, max_frames, evalmode=True, num_eval): float64 [num_eval, crop]."""
    import soundfile

    max_audio = max_frames * 160 + 240
    audio, _ = soundfile.read(filename)
    audiosize = audio.shape[0]
    if audiosize <= max_audio:
        shortage = max_audio - audiosize + 1
        audio = np.pad(audio, (0, shortage), "wrap")
        audiosize = audio.shape[0]
    startframe = np.linspace(0, audiosize - max_audio, num=num_eval)
    feats = [audio[int(asf):int(asf) + max_audio] for asf in startframe]
    return np.stack(feats, axis=0).astype(float)


class VTDataset:
    """voxceleb_trainer's test_dataset_loader: (FloatTensor of loadWAV's crops, file name)."""

    def __init__(self, files: list[str]):
        self.files = files

    def __getitem__(self, index):
        import torch

        return torch.FloatTensor(vt_load_wav(self.files[index], EVAL_FRAMES)), self.files[index]

    def __len__(self):
        return len(self.files)


class Variant:
    name = ""
    label = ""

    def embed_set(self, paths: list[str]) -> list[np.ndarray]:
        return [self.embed_one(p) for p in paths]

    def embed_one(self, path: str) -> np.ndarray:
        raise NotImplementedError


class VoxcelebTrainer(Variant):
    def __init__(self, network, workers: int):
        self.net, self.workers = network, workers
        self.name = "vt" if workers else "vt-inline"
        self.label = (f"voxceleb_trainer evaluateFromList, 10 crops ({workers} loader workers)" if workers else
                      "voxceleb_trainer evaluateFromList, 10 crops (no loader workers)")

    def embed_set(self, paths):
        import torch

        if not self.workers:
            return super().embed_set(paths)
        loader = torch.utils.data.DataLoader(VTDataset(paths), batch_size=1, shuffle=False,
                                             num_workers=self.workers, drop_last=False)
        out = []
        for data in loader:
            with torch.no_grad():
                out.append(self.net(data[0][0]).detach().cpu().numpy())
        return out

    def embed_one(self, path):
        import torch

        inp = torch.FloatTensor(vt_load_wav(path, EVAL_FRAMES))
        with torch.no_grad():
            return self.net(inp).detach().cpu().numpy()


class Pyspeaker(Variant):
    def __init__(self, name: str, label: str, model, crops: bool = False):
        self.name, self.label, self.model, self.crops = name, label, model, crops

    def embed_one(self, path):
        return self.model.embed_crops(path) if self.crops else self.model.embed(path)


class DistinctCrops(Variant):
    """Proposed embed_crops: each distinct crop once (optionally several files' crops per forward)."""

    def __init__(self, model, batch_crops: int = 0):
        self.model, self.batch_crops = model, batch_crops
        self.name = "crop-distinct-batched" if batch_crops else "crop-distinct"
        self.label = ("distinct crops, " + (f"several files per forward (<= {batch_crops} crops; not in pyspeaker)"
                      if batch_crops else "one file per forward (as embed_crops)"))

    def _prepare(self, path):
        from pyspeaker.compat.voxceleb_trainer import eval_input
        from pyspeaker.extraction import crop_starts
        from pyspeaker.models.frontend import crop_samples

        x = self.model.load(path)
        crops = eval_input(x, self.model.eval_frames, self.model.num_eval)
        crop = crop_samples(self.model.eval_frames)  # eval_input pads a file to crop + 1 samples at least
        starts = crop_starts(max(len(x), crop + 1), crop, self.model.num_eval)
        _, first, inverse = np.unique(starts, return_index=True, return_inverse=True)
        return crops[first], inverse.reshape(-1)

    def embed_one(self, path):
        uniq, inverse = self._prepare(path)
        return self.model._run(uniq)[inverse]

    def embed_set(self, paths):
        if not self.batch_crops:
            return super().embed_set(paths)
        out: list[np.ndarray] = []
        pending: list[tuple[np.ndarray, np.ndarray]] = []

        def flush():
            if pending:
                emb = self.model._run(np.concatenate([u for u, _ in pending]))
                start = 0
                for u, inv in pending:
                    out.append(emb[start:start + len(u)][inv])
                    start += len(u)
                pending.clear()

        for p in paths:
            uniq, inverse = self._prepare(p)
            if pending and sum(len(u) for u, _ in pending) + len(uniq) > self.batch_crops:
                flush()
            pending.append((uniq, inverse))
        flush()
        return out


class Resemblyzer(Variant):
    name, label = "resemblyzer", "Resemblyzer VoiceEncoder.embed_utterance"

    def __init__(self, encoder):
        self.encoder = encoder

    def embed_one(self, path):
        import soundfile as sf

        wav, _ = sf.read(path, dtype="float32")
        return self.encoder.embed_utterance(wav)


# ----------------------------------------------------------------------------- building the variants

def build_variants(work: Path, args) -> tuple[list[Variant], dict]:
    import pyspeaker
    from pyspeaker.compat import voxceleb_trainer as vt
    from pyspeaker.compat.importing import import_model, write_model_dir
    from pyspeaker.export import export_model

    info: dict = {"skipped": {}}
    t0 = time.perf_counter()
    vt_net = vt.load_model(FIXTURE, **VT_SETTINGS)
    model_dir = write_model_dir(import_model("voxceleb_trainer", FIXTURE, trainfunc="angleproto", **VT_SETTINGS),
                                work / "vt_model")
    crop_model = pyspeaker.load_model(model_dir, device="cpu", eval_frames=EVAL_FRAMES)
    eager = pyspeaker.load_model(model_dir, device="cpu")
    variants: list[Variant] = [VoxcelebTrainer(vt_net, args.vt_workers), VoxcelebTrainer(vt_net, 0),
                               Pyspeaker("crop", "pyspeaker crop mode (embed_crops), eval_frames 300", crop_model, True),
                               DistinctCrops(crop_model), DistinctCrops(crop_model, args.batch_crops),
                               Pyspeaker("eager", "pyspeaker whole utterance, eager (embed)", eager)]
    if args.vt_workers == 0:
        variants.pop(0)
    t1 = time.perf_counter()
    ts = export_model(eager.network, "torchscript", work / "vt.ts", with_frontend=True, checkpoint=eager.checkpoint)
    t2 = time.perf_counter()
    onnx = export_model(eager.network, "onnx", work / "vt.onnx", with_frontend=True, checkpoint=eager.checkpoint)
    t3 = time.perf_counter()
    info["export_s"] = {"torchscript": t2 - t1, "onnx": t3 - t2}
    variants.append(Pyspeaker("torchscript", "pyspeaker TorchScript export (with front-end)",
                              pyspeaker.load_model(ts, device="cpu")))
    onnx_model = pyspeaker.load_model(onnx, device="cpu")
    _set_ort_threads(onnx_model, args.threads, info)
    variants.append(Pyspeaker("onnx", "pyspeaker ONNX export, ONNX Runtime (with front-end)", onnx_model))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad's pkg_resources deprecation note
            from resemblyzer import VoiceEncoder
    except ImportError as e:
        info["skipped"]["resemblyzer"] = f"resemblyzer is not installed ({e}): pip install resemblyzer"
        print(f"skipping the Resemblyzer pair: {info['skipped']['resemblyzer']}", flush=True)
    else:
        rz_dir = write_model_dir(import_model("resemblyzer"), work / "rz_model")
        variants.append(Resemblyzer(VoiceEncoder("cpu", verbose=False)))
        variants.append(Pyspeaker("rz-pyspeaker", "pyspeaker, Resemblyzer's network imported (embed)",
                                  pyspeaker.load_model(rz_dir, device="cpu")))
    info["build_s"] = time.perf_counter() - t0
    return variants, info


def _set_ort_threads(model, threads: int, info: dict) -> None:
    """ONNX Runtime's intra-op threads = --threads (its default is one per physical core; load_model
    has no thread option, so the bench re-creates the session with the same file and options)."""
    import onnxruntime as ort

    net = model.network
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    net.session = ort.InferenceSession(os.fspath(model.path), options, providers=["CPUExecutionProvider"])
    info["onnxruntime_threads"] = threads


# ----------------------------------------------------------------------------- measuring

PAIRS = [  # (variant, peer ("vt*": the faster voxceleb_trainer form), tolerance, normalise before comparing)
    ("crop", "vt*", 1e-4, False), ("crop-distinct", "vt*", 1e-4, False), ("crop-distinct-batched", "vt*", 1e-4, False),
    ("torchscript", "eager", 1e-4, False), ("onnx", "eager", 1e-4, False), ("rz-pyspeaker", "resemblyzer", 1e-4, True),
]


def throughput(variants: list[Variant], data: dict, rounds: int, warmup: int = 3) -> tuple[dict, dict]:
    """{variant: {set: [seconds per pass]}} and the embeddings of the last pass."""
    times = {v.name: {s: [] for s in ("fsdd", "long")} for v in variants}
    outputs: dict[str, dict[str, list]] = {v.name: {} for v in variants}
    for v in variants:  # warm-up: the first files of each set
        for s in ("fsdd", "long"):
            v.embed_set(data[s][:warmup])
    for r in range(rounds):
        for v in variants:
            for s in ("fsdd", "long"):
                t0 = time.perf_counter()
                out = v.embed_set(data[s])
                times[v.name][s].append(time.perf_counter() - t0)
                if r == rounds - 1:
                    outputs[v.name][s] = out
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{v.name} {times[v.name]['fsdd'][-1]:.1f}+"
                                                      f"{times[v.name]['long'][-1]:.1f} s" for v in variants),
              flush=True)
    return times, outputs


def latency(variants: list[Variant], path: str, calls: int, warmup: int = 3) -> dict:
    out = {}
    for v in variants:
        for _ in range(warmup):
            v.embed_one(path)
        ts = []
        for _ in range(calls):
            t0 = time.perf_counter()
            v.embed_one(path)
            ts.append(time.perf_counter() - t0)
        out[v.name] = {"median_ms": 1e3 * float(np.median(ts)), "p90_ms": 1e3 * float(np.percentile(ts, 90)),
                       "min_ms": 1e3 * min(ts), "calls": calls}
    return out


def max_diff(a: list, b: list, normalise: bool) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if normalise:
            x, y = x / np.linalg.norm(x, axis=-1, keepdims=True), y / np.linalg.norm(y, axis=-1, keepdims=True)
        worst = max(worst, float(np.abs(x - y).max()))
    return worst


def summarise(variants, times, outputs, lat, data) -> dict:
    names = [v.name for v in variants]
    res: dict = {"variants": {}}
    for v in variants:
        row = {"label": v.label, "latency_10s": lat[v.name]}
        for s in ("fsdd", "long"):
            best, med = min(times[v.name][s]), float(np.median(times[v.name][s]))
            n, audio = len(data[s]), data["seconds"][s]
            row[s] = {"utt_per_s": n / best, "utt_per_s_median": n / med, "rtf": best / audio,
                      "rtf_median": med / audio, "seconds": times[v.name][s]}
        res["variants"][v.name] = row
    vt_forms = [n for n in ("vt", "vt-inline") if n in names]
    base = {s: max(vt_forms, key=lambda n: res["variants"][n][s]["utt_per_s"]) for s in ("fsdd", "long")}
    base_lat = min(vt_forms, key=lambda n: lat[n]["median_ms"])
    res["baseline"] = {"throughput": base, "latency": base_lat}
    if len(vt_forms) == 2:
        res["vt_forms_max_abs_diff"] = max(max_diff(outputs["vt"][s], outputs["vt-inline"][s], False)
                                           for s in ("fsdd", "long"))
    res["pairs"] = {}
    for name, peer, tol, normalise in PAIRS:
        if name not in names or (peer != "vt*" and peer not in names):
            continue
        p = {}
        diff = 0.0
        for s in ("fsdd", "long"):
            peer_s = base[s] if peer == "vt*" else peer
            diff = max(diff, max_diff(outputs[name][s], outputs[peer_s][s], normalise))
            p[s] = {"peer": peer_s, "ratio": res["variants"][name][s]["utt_per_s"] / res["variants"][peer_s][s]["utt_per_s"]}
        peer_l = base_lat if peer == "vt*" else peer
        p["latency"] = {"peer": peer_l, "ratio": lat[peer_l]["median_ms"] / lat[name]["median_ms"]}
        p["max_abs_diff"], p["tolerance"], p["equal"] = diff, tol, diff <= tol
        res["pairs"][name] = p
    targets = {}
    for name in ("crop", "crop-distinct", "crop-distinct-batched", "rz-pyspeaker"):
        if name in res["pairs"]:
            p = res["pairs"][name]
            targets[f"{name}_2x_source"] = {s: bool(p["equal"] and p[s]["ratio"] >= 2.0) for s in ("fsdd", "long")}
    if "onnx" in res["pairs"]:
        p = res["pairs"]["onnx"]
        targets["onnx_not_slower_than_eager"] = {s: bool(p[s]["ratio"] >= 1.0) for s in ("fsdd", "long", "latency")}
    res["targets"] = targets
    return res


# ----------------------------------------------------------------------------- report

def table(res: dict, data: dict) -> str:
    n_f, n_l = len(data["fsdd"]), len(data["long"])
    lines = [(f"| variant | FSDD ({n_f} x {data['seconds']['fsdd'] / n_f:.2f} s): utt/s | RTF | 10 s ({n_l}): utt/s | RTF "
             "| latency 10 s, median (p90) | ratio: throughput FSDD / 10 s / latency | vs. | max abs diff |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in res["variants"].items():
        f, g, lt = row["fsdd"], row["long"], row["latency_10s"]
        p = res["pairs"].get(name)
        ratio = f"{p['fsdd']['ratio']:.2f}x / {p['long']['ratio']:.2f}x / {p['latency']['ratio']:.2f}x" if p else ""
        peer = ({"vt*": "voxceleb_trainer"}.get(p["fsdd"]["peer"], p["fsdd"]["peer"]) if p else "")
        if p and p["fsdd"]["peer"] in ("vt", "vt-inline"):
            peer = "voxceleb_trainer (faster form)"
        diff = f"{p['max_abs_diff']:.1e}" if p else ""
        lines.append(f"| {row['label']} | {f['utt_per_s']:.1f} ({f['utt_per_s_median']:.1f}) | {f['rtf']:.4f} "
                     f"| {g['utt_per_s']:.1f} ({g['utt_per_s_median']:.1f}) | {g['rtf']:.4f} "
                     f"| {lt['median_ms']:.1f} ({lt['p90_ms']:.1f}) ms | {ratio} | {peer} | {diff} |")
    return "\n".join(lines)


def target_lines(res: dict) -> list[str]:
    out = []
    mark = lambda ok: "met" if ok else "NOT met"
    for key, val in res["targets"].items():
        if key.endswith("_2x_source"):
            name = key[:-len("_2x_source")]
            p = res["pairs"][name]
            out.append(f"{name} >= 2x its source toolkit at equal embeddings (diff {p['max_abs_diff']:.1e}): "
                       f"FSDD {p['fsdd']['ratio']:.2f}x {mark(val['fsdd'])}, "
                       f"10 s {p['long']['ratio']:.2f}x {mark(val['long'])}")
        else:
            p = res["pairs"]["onnx"]
            out.append(f"ONNX Runtime not slower than eager: FSDD {p['fsdd']['ratio']:.2f}x {mark(val['fsdd'])}, "
                       f"10 s {p['long']['ratio']:.2f}x {mark(val['long'])}, "
                       f"latency {p['latency']['ratio']:.2f}x {mark(val['latency'])}")
    return out


def update_results_md(report: dict, tab: str, targets: list[str], argv: str, path: Path | None = None) -> Path:
    """Write (or replace) this benchmark's section of bench/RESULTS.md; the other sections stay as they are."""
    path = REPO / "bench" / "RESULTS.md" if path is None else path
    m, res = report["machine"], report["results"]
    vt_workers = report["settings"]["vt_workers"]
    base = res["baseline"]
    rounds = report["settings"]["rounds"]
    text = [f"{SECTION}, {datetime.date.today().isoformat()})", "",
            (f"`{argv}`: CPU, {m['threads']} torch threads (ONNX Runtime the same), one process. voxceleb_trainer's "
            "ResNetSE34L + SAP checkpoint (the fixture, angleproto, nOut 512, 40 mel), 16 kHz 16-bit WAVs made "
            "from FSDD (resampled once), read from disk by every variant. Throughput: "
            f"{f'best of {rounds} passes' if rounds > 1 else 'one pass'} over the set (median in brackets), "
            "RTF = processing s / audio s. "
            f"Latency: {report['settings']['latency_calls']} calls on one 10 s utterance after warm-up. Ratios: the "
            "variant's speed over its peer's (latency: the peer's median over the variant's)."), "",
            (f"The source toolkit is voxceleb_trainer's evaluateFromList re-implemented (loadWAV evalmode, 10 crops of "
            f"300 frames, one forward per file), with its DataLoader ({vt_workers} workers) and without; the ratios "
            f"are against the faster form (FSDD: {base['throughput']['fsdd']}, 10 s: {base['throughput']['long']}). "
            "pyspeaker's crop mode runs each distinct crop once (a file shorter than the crop has 2 distinct crops "
            "of its 10); the \"distinct crops\" rows are the bench's own version of that, and of batching several "
            "files' crops (not in pyspeaker)."), "",
            tab, "", "Targets (issue 11):", ""] + [f"- {t}" for t in targets]
    if res.get("skipped"):
        text += [""] + [f"Skipped: {k}: {v}" for k, v in res["skipped"].items()]
    text += ["", f"Load average {m['load_average_start'][0]:.2f} at the start, {m['load_average_end'][0]:.2f} at the end.",
             ""]
    import textwrap

    section = "\n".join(line if line.startswith(("|", "#")) or not line else textwrap.fill(
        line, 100, break_on_hyphens=False, subsequent_indent="  " if line.startswith("- ") else "") for line in text)
    old = path.read_text() if path.exists() else "# Benchmark results (tracked)\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        new = old[:start] + section + ("\n" + old[nxt + 1:] if nxt >= 0 else "")
    path.write_text(new.rstrip("\n") + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch (and ONNX Runtime) threads")
    ap.add_argument("--files", type=int, default=200, help="FSDD recordings")
    ap.add_argument("--long", type=int, default=20, help="10 s one-speaker concatenations")
    ap.add_argument("--latency-calls", type=int, default=30, help="calls on one 10 s utterance")
    ap.add_argument("--rounds", type=int, default=2, help="timed passes over each set (best and median reported)")
    ap.add_argument("--vt-workers", type=int, default=5,
                    help="voxceleb_trainer's DataLoader workers (its nDataLoaderThread default: 5; 0: only inline)")
    ap.add_argument("--batch-crops", type=int, default=32, help="crops per forward of crop-distinct-batched")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "embed_latency.json"))
    ap.add_argument("--no-results-md", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run (6 files, 2 long, 3 calls, 1 round, 1 warm-up call)")
    args = ap.parse_args()
    if args.quick:
        args.files, args.long, args.latency_calls, args.rounds = 6, 2, 3, 1
    warmup = 1 if args.quick else 3
    argv = "python bench/embed_latency.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    # voxceleb_trainer's 5 loader workers on a 2-core machine: torch's "suggested max" note, expected here
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    import torch

    torch.set_num_threads(args.threads)
    from pyspeaker.log import get_logger

    get_logger("pyspeaker").setLevel("WARNING")
    start = time.perf_counter()
    report = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__, "cpus": os.cpu_count(), "threads": args.threads,
                          "load_average_start": os.getloadavg()},
              "settings": {"files": args.files, "long": args.long, "latency_calls": args.latency_calls,
                           "rounds": args.rounds, "vt_workers": args.vt_workers, "batch_crops": args.batch_crops,
                           "eval_frames": EVAL_FRAMES, "num_eval": NUM_EVAL, "checkpoint": str(FIXTURE)}}
    with tempfile.TemporaryDirectory(prefix="embed_latency_") as tmp:
        work = Path(tmp)
        data = make_data(work / "wav", args.files, args.long)
        print(f"data: {len(data['fsdd'])} FSDD files ({data['seconds']['fsdd']:.1f} s), {len(data['long'])} x 10 s "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
        variants, info = build_variants(work, args)
        print(f"variants: {', '.join(v.name for v in variants)} (built in {info['build_s']:.1f} s; export "
              f"TorchScript {info['export_s']['torchscript']:.1f} s, ONNX {info['export_s']['onnx']:.1f} s)", flush=True)
        times, outputs = throughput(variants, data, args.rounds, warmup)
        lat = latency(variants, data["long"][0], args.latency_calls, warmup)
        res = summarise(variants, times, outputs, lat, data)
    res.update(info)
    try:
        import onnxruntime

        report["machine"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    report["machine"]["load_average_end"] = os.getloadavg()
    report["data"] = {"fsdd_files": len(data["fsdd"]), "long_files": len(data["long"]), "seconds": data["seconds"]}
    report["results"] = res
    report["wall_s"] = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    tab, targets = table(res, data), target_lines(res)
    print("\n" + tab + "\n")
    if "vt_forms_max_abs_diff" in res:
        print(f"voxceleb_trainer with / without loader workers: max abs diff {res['vt_forms_max_abs_diff']:.1e}")
    for name, p in res["pairs"].items():
        print(f"{name} vs {p['fsdd']['peer']}: max abs diff {p['max_abs_diff']:.2e} "
              f"({'<=' if p['equal'] else 'OVER'} {p['tolerance']:.0e}); speed {p['fsdd']['ratio']:.2f}x (FSDD), "
              f"{p['long']['ratio']:.2f}x (10 s), latency {p['latency']['ratio']:.2f}x")
    print("\ntargets (issue 11):")
    for t in targets:
        print("  " + t)
    print(f"\nwrote {out} ({report['wall_s']:.0f} s in all)")
    if not args.no_results_md:
        print(f"updated {update_results_md(report, tab, targets, argv)}")


if __name__ == "__main__":
    main()
