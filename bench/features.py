#!/usr/bin/env python3
"""Features stage throughput: decode WAV + 80-dim fbank (conf/fbank.conf) + HDF5 write.

    python bench/features.py [--minutes 10] [--threads 1] [--repeats 3] [--batch 16]

Compares, on the same synthesised 16 kHz speech-like WAV files (3-8 s each):
  kaldi-native-fbank   Kaldi's C++ feature code (OnlineFbank per utterance, int16-scaled samples)
  torchaudio           torchaudio.compliance.kaldi.fbank
  pyspeaker            FeatureExtractor, one utterance per call
  pyspeaker-batch      FeatureExtractor.batch over --batch utterances
and prints ms of processing per minute of audio (best of --repeats; wall and CPU time) and the
throughput ratio against kaldi-native-fbank.  Results go to bench/results/features.json.
Exits 1 if pyspeaker's numbers differ from kaldi-native-fbank's (or torchaudio's, when
kaldi-native-fbank is not installed: pip install -r requirements-bench.txt) by more than --tol
(for mel bins within 10 nats of their frame's loudest; 10x --tol for quieter bins, where float32
FFT rounding dominates).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SR = 16000


def make_corpus(folder: Path, minutes: float, seed: int = 0) -> list[Path]:
    """Speech-like WAVs (16-bit PCM): harmonic voice with wandering pitch, syllable-rate
    envelope, noise and short pauses; 3-8 s each until ``minutes`` of audio."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    paths, total = [], 0.0
    while total < minutes * 60:
        dur = float(rng.uniform(3.0, 8.0))
        t = np.arange(int(dur * SR)) / SR
        f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        voice = sum(np.sin(k * phase) * rng.uniform(0.3, 1.0) / k for k in range(1, 15))
        envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 1.5
        x = 0.1 * voice * envelope + 0.002 * rng.standard_normal(t.size)
        path = folder / f"utt{len(paths):04d}.wav"
        sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
        paths.append(path)
        total += dur
    return paths


def write_features(h5, utt: str, feats: np.ndarray) -> None:
    """The store write: one dataset per utterance (kept in one place so it can be swapped)."""
    h5.create_dataset(utt, data=np.asarray(feats, dtype=np.float32))


def knf_options(cfg):
    import kaldi_native_fbank as knf

    o = knf.FbankOptions()
    f = o.frame_opts
    f.samp_freq, f.frame_shift_ms, f.frame_length_ms = cfg.sample_frequency, cfg.frame_shift, cfg.frame_length
    f.dither, f.preemph_coeff, f.remove_dc_offset = cfg.dither, cfg.preemphasis_coefficient, cfg.remove_dc_offset
    f.window_type, f.round_to_power_of_two, f.snip_edges = cfg.window_type, cfg.round_to_power_of_two, cfg.snip_edges
    f.blackman_coeff = cfg.blackman_coeff
    o.mel_opts.num_bins, o.mel_opts.low_freq, o.mel_opts.high_freq = cfg.num_mel_bins, cfg.low_freq, cfg.high_freq
    o.use_energy, o.energy_floor, o.raw_energy = cfg.use_energy, cfg.energy_floor, cfg.raw_energy
    o.htk_compat, o.use_log_fbank, o.use_power = cfg.htk_compat, cfg.use_log_fbank, cfg.use_power
    return o


def torchaudio_options(cfg) -> dict:
    names = ("sample_frequency", "frame_length", "frame_shift", "dither", "preemphasis_coefficient",
             "remove_dc_offset", "window_type", "round_to_power_of_two", "blackman_coeff", "snip_edges",
             "num_mel_bins", "low_freq", "high_freq", "use_energy", "energy_floor", "raw_energy",
             "htk_compat", "use_log_fbank", "use_power")
    return {n: getattr(cfg, n) for n in names}


def run_knf(paths, cfg, h5) -> None:
    import kaldi_native_fbank as knf
    import soundfile as sf

    opts = knf_options(cfg)
    for p in paths:
        samples, sr = sf.read(p, dtype="float32")
        comp = knf.OnlineFbank(opts)
        comp.accept_waveform(sr, (samples * 32768.0).tolist())  # a list converts faster than ndarray
        comp.input_finished()
        feats = np.stack([comp.get_frame(i) for i in range(comp.num_frames_ready)])
        write_features(h5, p.stem, feats)


def run_torchaudio(paths, cfg, h5) -> None:
    import soundfile as sf
    import torch
    import torchaudio.compliance.kaldi as ta

    opts = torchaudio_options(cfg)
    for p in paths:
        samples, sr = sf.read(p, dtype="float32")
        feats = ta.fbank(torch.from_numpy(samples)[None] * 32768.0, **opts)
        write_features(h5, p.stem, feats.numpy())


def make_run_pyspeaker(cfg, batch: int) -> Callable:
    from pyspeaker.features import FeatureExtractor

    extract = FeatureExtractor(cfg)  # made once, like a features job does

    def run(paths, _cfg, h5) -> None:
        import soundfile as sf

        for i in range(0, len(paths), batch):
            chunk = paths[i:i + batch]
            decoded = [sf.read(p, dtype="float32") for p in chunk]
            if batch == 1:
                results = [extract(decoded[0][0], decoded[0][1])]
            else:
                results = extract.batch([s for s, _ in decoded], decoded[0][1])
            for p, feats in zip(chunk, results):
                write_features(h5, p.stem, feats)

    return run


def timed(run: Callable, paths, cfg, out_file: Path) -> tuple[float, float]:
    import h5py

    out_file.unlink(missing_ok=True)
    wall, cpu = time.perf_counter(), time.process_time()
    with h5py.File(out_file, "w") as h5:
        run(paths, cfg, h5)
    return time.perf_counter() - wall, time.process_time() - cpu


def read_store(path: Path) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as h5:
        return {k: h5[k][()] for k in h5}


# float32 FFT rounding has an absolute error set by the frame's total energy, so a mel bin far
# below the frame's loudest one is only known to ~eps * sqrt(power ratio): at 18 nats below, any
# two float32 implementations (torchaudio vs kaldi-native-fbank included) differ by ~1e-3.  The
# strict check therefore covers bins within LOG_RANGE nats (43 dB) of their frame's maximum.
LOG_RANGE = 10.0


def max_diff(a: dict, b: dict) -> tuple[float, float]:
    """(max |a - b| over all entries, over entries of b within LOG_RANGE of their frame's max)."""
    assert a.keys() == b.keys()
    worst = worst_loud = 0.0
    for k in a:
        if a[k].shape != b[k].shape:
            return float("inf"), float("inf")
        d = np.abs(a[k] - b[k])
        worst = max(worst, float(d.max()))
        loud = b[k] >= b[k].max(axis=1, keepdims=True) - LOG_RANGE
        worst_loud = max(worst_loud, float(d[loud].max()))
    return worst, worst_loud


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of audio to synthesise")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method; the best is reported")
    ap.add_argument("--batch", type=int, default=16, help="utterances per FeatureExtractor.batch call")
    ap.add_argument("--conf", default=str(REPO / "conf/fbank.conf"), help="Kaldi fbank option file")
    ap.add_argument("--tol", type=float, default=1e-3,
                    help="largest allowed |pyspeaker - reference| for mel bins within 10 nats of their "
                         "frame's loudest (10x this anywhere)")
    ap.add_argument("--out", default=str(REPO / "bench/results/features.json"), help="JSON results")
    args = ap.parse_args()

    import torch

    from pyspeaker.features import load_feature_config

    torch.set_num_threads(args.threads)
    cfg = load_feature_config(args.conf)
    try:
        import kaldi_native_fbank  # noqa: F401
        have_knf = True
    except ImportError:
        have_knf = False
        print("kaldi-native-fbank is not installed (pip install -r requirements-bench.txt): "
              "comparing against torchaudio only", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        tmp = Path(tmp)
        wav_dir = tmp / "wav"
        wav_dir.mkdir()
        paths = make_corpus(wav_dir, args.minutes)
        import soundfile as sf

        audio_min = sum(sf.info(p).frames for p in paths) / SR / 60
        methods: dict[str, Callable] = {}
        if have_knf:
            methods["kaldi-native-fbank"] = run_knf
        methods["torchaudio"] = run_torchaudio
        methods["pyspeaker"] = make_run_pyspeaker(cfg, 1)
        methods["pyspeaker-batch"] = make_run_pyspeaker(cfg, args.batch)
        for run in methods.values():  # warm-up: imports, caches, file cache
            timed(run, paths[:2], cfg, tmp / "warmup.h5")
        best = {m: [float("inf"), float("inf")] for m in methods}
        for _ in range(args.repeats):  # interleaved, so load changes hit every method alike
            for name, run in methods.items():
                wall, cpu = timed(run, paths, cfg, tmp / f"{name}.h5")
                best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
        stores = {name: read_store(tmp / f"{name}.h5") for name in methods}

    ref_name = "kaldi-native-fbank" if have_knf else "torchaudio"
    diffs = {f"{name} vs {ref_name}": max_diff(stores[name], stores[ref_name])
             for name in methods if name != ref_name}
    if have_knf:
        diffs["torchaudio vs kaldi-native-fbank"] = max_diff(stores["torchaudio"], stores["kaldi-native-fbank"])
    diffs["pyspeaker-batch vs pyspeaker"] = max_diff(stores["pyspeaker-batch"], stores["pyspeaker"])

    per_min = {m: {"wall_ms_per_min": 1e3 * w / audio_min, "cpu_ms_per_min": 1e3 * c / audio_min}
               for m, (w, c) in best.items()}
    base = per_min[ref_name]
    print(f"\nfeatures stage (decode + fbank + HDF5 write), {len(paths)} files, {audio_min:.1f} min of audio, "
          f"torch threads={args.threads}, conf={os.path.relpath(args.conf, REPO)} ({cfg.feat_id()})")
    print(f"{'method':20s} {'wall ms/min':>12s} {'cpu ms/min':>11s} {'speed-up vs ' + ref_name:>32s}")
    for m, v in per_min.items():
        ratio = base["wall_ms_per_min"] / v["wall_ms_per_min"]
        cpu_ratio = base["cpu_ms_per_min"] / v["cpu_ms_per_min"]
        v["throughput_vs_" + ref_name] = {"wall": ratio, "cpu": cpu_ratio}
        print(f"{m:20s} {v['wall_ms_per_min']:12.1f} {v['cpu_ms_per_min']:11.1f} "
              f"{ratio:22.2f}x wall {cpu_ratio:5.2f}x cpu")
    print(f"max |difference| of the stored features: all entries / bins within {LOG_RANGE:g} of their frame's max")
    for k, (d_all, d_above) in diffs.items():
        print(f"  {k:40s} {d_all:.2e} / {d_above:.2e}")
    # a real mistake (window, mel banks, framing) shows up as differences of 0.01 and more
    bad = [k for k, (d_all, d_loud) in diffs.items()
           if k.startswith("pyspeaker") and not (d_loud <= args.tol and d_all <= 10 * args.tol)]
    result = {
        "audio_minutes": audio_min, "files": len(paths), "threads": args.threads, "repeats": args.repeats,
        "batch": args.batch, "conf": os.path.relpath(args.conf, REPO), "feat_id": cfg.feat_id(),
        "reference": ref_name, "methods": per_min,
        "max_abs_diff": {k: {"all": a, f"within_{LOG_RANGE:g}_of_frame_max": b} for k, (a, b) in diffs.items()},
        "tolerance": {f"within_{LOG_RANGE:g}_of_frame_max": args.tol, "all": 10 * args.tol},
        "numerically_equal": not bad, "machine": {"cpu": platform.processor() or platform.machine(),
                                                  "cores": os.cpu_count(), "torch": torch.__version__},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out}")
    if bad:
        print(f"FAIL: pyspeaker features differ by more than {args.tol:g}: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
