#!/usr/bin/env python3
"""Scoring and metrics at scale: 1 million and 10 million trials.

    python bench/score_bench.py [--quick] [--sizes 1000000,10000000] [--dim 256] [--baseline-trials 20000]

For each size it generates, in a temporary directory, a VoxCeleb-like evaluation set: embeddings
(``xvector.h5``, ``--dim`` floats, 50 utterances per speaker, ids like ``id01234/abcdefghijk/00042.wav``)
and a VoxCeleb trial list (``<1|0> <enroll> <test>``) whose enroll utterance repeats on 10
consecutive lines (as in the official lists), about 10 % targets, test utterances drawn at random
from the whole set. Then it measures, each in its own process (wall time and peak RSS = ru_maxrss):

  (a) the scoring computation: embeddings loaded and trial list parsed (``read_trials``), then
      cosine scores (after mean subtraction) of every trial in memory
      (``pyspeaker.scoring.pipeline.score_codes``); also with the trial list shuffled (no enroll
      runs) and with an LDA + PLDA back-end;
  baseline: voxceleb_trainer's evaluation loop re-implemented (``evaluateFromList``: for each line,
      split it, look up the two embeddings as torch tensors, ``F.normalize``, then ``torch.cdist`` as
      voxceleb_trainer does, or a dot product + ``.item()``; the faster of the two is the baseline)
      on the first ``--baseline-trials`` trials, in the same run;
  (b) ``pyspeaker score`` file to file (trials + embeddings + mean.npy -> scores.txt + scores.json);
  (c) ``pyspeaker compute-metrics`` on those scores, as the recipe runs it (metrics.json, DET and
      histogram PNGs), and without the plots.

Targets: issue 4, (a) >= 100x the baseline (>= 2.7 million trials/s where the loop does ~27,000);
issue 10, (b) 1 million trials file to file in <= 1.5 s, (c) compute-metrics on 1 million scores
(no plots) in <= 1.5 s, and (b) and (c) on 10 million trials each under 2 GB. Results are printed
and written to bench/results/score_bench.json. ``--quick`` runs 1 million trials, then only (b) and
(c) on ``--memory-trials`` (10 million) for the memory target.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

UTTS_PER_SPEAKER = 50
RUN = 10  # consecutive trials sharing an enroll utterance


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- data ------------------------------------------------------------------------------------------

def generate(folder: Path, num_trials: int, dim: int, seed: int = 0) -> dict:
    """Embeddings, mean.npy, utt2spk and a VoxCeleb trial list in ``folder``."""
    import h5py

    rng = np.random.default_rng(seed)
    num_ids = int(min(max(num_trials // 10, 1000), 200_000))
    num_spk = max(2, num_ids // UTTS_PER_SPEAKER)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"))
    videos = ["".join(rng.choice(letters, 11)) for _ in range(num_ids // 5 + 1)]
    ids = [f"id{u // UTTS_PER_SPEAKER:05d}/{videos[u // 5]}/{u % UTTS_PER_SPEAKER:05d}.wav" for u in range(num_ids)]
    spk = np.arange(num_ids) // UTTS_PER_SPEAKER
    speaker_vec = rng.normal(0, 1, (num_spk + 1, dim)).astype(np.float32)
    emb = 0.5 + speaker_vec[spk] + rng.normal(0, 2.0, (num_ids, dim)).astype(np.float32)
    emb_dir = folder / "emb"
    emb_dir.mkdir(parents=True)
    with h5py.File(emb_dir / "xvector.h5", "w") as f:
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("embeddings", data=emb)
    np.save(folder / "mean.npy", emb.astype(np.float64).mean(axis=0).astype(np.float32))
    (folder / "utt2spk").write_text("".join(f"{u} id{s:05d}\n" for u, s in zip(ids, spk)))

    enroll = np.repeat(rng.integers(0, num_ids, -(-num_trials // RUN)), RUN)[:num_trials]
    same = rng.random(num_trials) < 0.1
    test = np.where(same, spk[enroll] * UTTS_PER_SPEAKER + rng.integers(0, UTTS_PER_SPEAKER, num_trials),
                    rng.integers(0, num_ids, num_trials))
    test = np.minimum(test, num_ids - 1)
    test = np.where(test == enroll, (test + 1) % num_ids, test)
    label = (spk[enroll] == spk[test]).astype(np.int64)
    id_arr = np.array(ids, dtype=object)
    with open(folder / "trials", "w") as f:
        for start in range(0, num_trials, 1 << 20):
            stop = min(num_trials, start + (1 << 20))
            values: list = [None] * (3 * (stop - start))
            values[0::3] = label[start:stop].tolist()
            values[1::3] = id_arr[enroll[start:stop]].tolist()
            values[2::3] = id_arr[test[start:stop]].tolist()
            f.write(("%d %s %s\n" * (stop - start)) % tuple(values))
    return {"num_trials": num_trials, "num_embeddings": num_ids, "num_speakers": num_spk, "dim": dim,
            "targets": int(label.sum()), "trials_bytes": (folder / "trials").stat().st_size,
            "embeddings_bytes": (emb_dir / "xvector.h5").stat().st_size}


# --- measured children ------------------------------------------------------------------------------

def child_scoring(folder: Path, variant: str) -> dict:
    """(a): load, parse, then time the scoring computation alone."""
    from pyspeaker.data.trials import read_trials
    from pyspeaker.scoring.backend import CosineBackend, train_backend
    from pyspeaker.scoring.pipeline import score_codes
    from pyspeaker.store.embeddings import load_embeddings

    t0 = time.perf_counter()
    ids, emb = load_embeddings(folder / "emb")
    t1 = time.perf_counter()
    trials = read_trials(folder / "trials")
    t2 = time.perf_counter()
    if variant == "shuffled":  # no enroll runs: both sides random
        order = np.random.default_rng(1).permutation(len(trials))
        trials.enroll_codes, trials.test_codes = trials.enroll_codes[order], trials.test_codes[order]
    if variant == "plda":
        spk = [u.split("/")[0] for u in ids[:20_000]]
        backend, _ = train_backend("plda", emb[:20_000], spk, lda_dim=200)
    else:
        backend = CosineBackend(np.load(folder / "mean.npy"))
    t3 = time.perf_counter()
    scores = score_codes(trials, ids, emb, backend=backend)
    t4 = time.perf_counter()
    assert len(scores) == len(trials) and np.isfinite(scores[:1000]).all()
    n = len(trials)
    return {"variant": variant, "load_embeddings_s": t1 - t0, "parse_trials_s": t2 - t1, "score_s": t4 - t3,
            "trials_per_s": n / (t4 - t3), "parse_and_score_trials_per_s": n / (t4 - t3 + t2 - t1),
            "peak_rss_mb": _maxrss_mb()}


def child_baseline(folder: Path, num: int) -> dict:
    """voxceleb_trainer's per-trial evaluation loop on the first ``num`` trials."""
    import torch
    import torch.nn.functional as F

    from pyspeaker.store.embeddings import load_embeddings

    torch.set_num_threads(1)
    with open(folder / "trials") as f:
        lines = [next(f) for _ in range(num)]
    ids, emb = load_embeddings(folder / "emb")
    wanted = {x for line in lines for x in line.split()[1:]}
    feats = {u: torch.from_numpy(emb[i:i + 1].copy()) for i, u in enumerate(ids) if u in wanted}
    out = {}
    with torch.no_grad():
        for variant in ("cdist", "dot"):
            start = time.perf_counter()
            all_scores = []
            for line in lines:
                data = line.split()
                ref_feat = F.normalize(feats[data[1]], p=2, dim=1)
                com_feat = F.normalize(feats[data[2]], p=2, dim=1)
                if variant == "cdist":  # as evaluateFromList: score = -mean(cdist)
                    dist = torch.cdist(ref_feat.reshape(1, -1), com_feat.reshape(1, -1)).detach().cpu().numpy()
                    all_scores.append(-1 * np.mean(dist))
                else:
                    all_scores.append(torch.matmul(ref_feat, com_feat.T).item())
            out[f"{variant}_trials_per_s"] = num / (time.perf_counter() - start)
    out["trials"] = num
    return out


def child_measure(result: Path, args: list[str]) -> None:
    """Run one pyspeaker command in this process and record its exit code and peak RSS."""
    from pyspeaker.cli import run

    code = run(args)
    result.write_text(json.dumps({"returncode": code, "peak_rss_mb": _maxrss_mb()}))
    sys.exit(code)


def _child(args: list[str], timeout: float = 3600) -> tuple[dict, float]:
    """Run ``score_bench.py ARGS`` in a fresh process; returns its JSON result and wall time."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        result = Path(tmp.name)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--result", str(result), *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(REPO)))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    data = json.loads(result.read_text())
    result.unlink()
    return data, wall


def _measure_scoring(folder: Path, num_trials: int, baseline_trials: int) -> dict:
    """baseline and (a): the per-trial loop, then the scoring computation, in fresh processes."""
    out = {}
    base, _ = _child(["--baseline", str(folder), str(min(baseline_trials, num_trials))])
    out["baseline"] = base
    print(f"baseline (voxceleb_trainer loop, {base['trials']:,} trials): cdist {base['cdist_trials_per_s']:,.0f}"
          f" trials/s, dot {base['dot_trials_per_s']:,.0f} trials/s", flush=True)
    for variant in ("cosine", "shuffled", "plda"):
        a, _ = _child(["--scoring", str(folder), variant])
        out[f"a_{variant}"] = a
        print(f"(a) {variant:9s}: score {a['score_s']:.3f} s = {a['trials_per_s'] / 1e6:.2f} M trials/s "
              f"(parse {a['parse_trials_s']:.2f} s, load {a['load_embeddings_s']:.2f} s; "
              f"parse+score {a['parse_and_score_trials_per_s'] / 1e6:.2f} M/s), peak {a['peak_rss_mb']:.0f} MB",
              flush=True)
    baseline_rate = max(base["cdist_trials_per_s"], base["dot_trials_per_s"])
    out["a_speedup_vs_baseline"] = out["a_cosine"]["trials_per_s"] / baseline_rate
    out["a_speedup_vs_cdist_loop"] = out["a_cosine"]["trials_per_s"] / base["cdist_trials_per_s"]
    print(f"(a) speed-up: {out['a_speedup_vs_baseline']:.0f}x the faster (dot) loop, "
          f"{out['a_speedup_vs_cdist_loop']:.0f}x voxceleb_trainer's cdist loop", flush=True)
    return out


def _measure_commands(folder: Path) -> dict:
    """(b) and (c): ``pyspeaker score`` and ``compute-metrics`` (with and without plots) as commands."""
    out = {}
    scores = folder / "scores" / "scores.txt"
    b, wall = _child(["--measure", "--", "score", "--embeddings", str(folder / "emb"), "--trials",
                      str(folder / "trials"), "--out", str(scores), "--mean", str(folder / "mean.npy")])
    out["b_score_command"] = {"wall_s": wall, "peak_rss_mb": b["peak_rss_mb"], "scores_bytes": scores.stat().st_size}
    print(f"(b) pyspeaker score: {wall:.2f} s, peak {b['peak_rss_mb']:.0f} MB", flush=True)
    res = folder / "results"
    c, wall = _child(["--measure", "--", "compute-metrics", "--scores", str(scores), "--trials",
                      str(folder / "trials"), "--out", str(res / "metrics.json"), "--det", str(res / "det.png"),
                      "--hist", str(res / "hist.png")])
    metrics = json.loads((res / "metrics.json").read_text())
    out["c_compute_metrics"] = {"wall_s": wall, "peak_rss_mb": c["peak_rss_mb"], "eer": metrics["eer"],
                                "min_dcf": metrics["min_dcf"]}
    print(f"(c) pyspeaker compute-metrics (+ DET and histogram): {wall:.2f} s, peak {c['peak_rss_mb']:.0f} MB "
          f"(EER {metrics['eer']:.2f} %)", flush=True)
    c2, wall = _child(["--measure", "--", "compute-metrics", "--scores", str(scores), "--trials",
                       str(folder / "trials"), "--out", str(res / "metrics2.json")])
    out["c_compute_metrics_no_plots"] = {"wall_s": wall, "peak_rss_mb": c2["peak_rss_mb"]}
    print(f"(c) without plots: {wall:.2f} s, peak {c2['peak_rss_mb']:.0f} MB", flush=True)
    return out


def run_size(num_trials: int, dim: int, baseline_trials: int, keep: Path | None, commands_only: bool = False) -> dict:
    """Generate one evaluation set and measure it (only (b) and (c) when ``commands_only``)."""
    folder = Path(tempfile.mkdtemp(prefix=f"score_bench_{num_trials}_"))
    try:
        print(f"\n== {num_trials:,} trials{' (commands only)' if commands_only else ''} ==", flush=True)
        start = time.perf_counter()
        info = generate(folder, num_trials, dim)
        print(f"generated {info['num_embeddings']:,} embeddings ({dim}-dim), {num_trials:,} trials "
              f"({info['trials_bytes'] / 2**20:.0f} MB) in {time.perf_counter() - start:.1f} s", flush=True)
        out = {"data": info}
        if not commands_only:
            out.update(_measure_scoring(folder, num_trials, baseline_trials))
        out.update(_measure_commands(folder))
        peak = max(out["b_score_command"]["peak_rss_mb"], out["c_compute_metrics"]["peak_rss_mb"])
        out["targets"] = {
            "a_100x_baseline": None if commands_only else out["a_speedup_vs_baseline"] >= 100,
            "a_2.7M_trials_per_s": None if commands_only else out["a_cosine"]["trials_per_s"] >= 2.7e6,
            "b_1M_under_1.5s": None if num_trials != 1_000_000 else out["b_score_command"]["wall_s"] <= 1.5,
            "c_1M_no_plots_under_1.5s":
                None if num_trials != 1_000_000 else out["c_compute_metrics_no_plots"]["wall_s"] <= 1.5,
            "b_c_under_2GB": peak < 2048,
        }
        return out
    finally:
        if keep is not None:
            shutil.copytree(folder, keep / folder.name, dirs_exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)


def _print_summary(report: dict) -> None:
    print(f"{'trials':>12} {'(a) M trials/s':>15} {'x baseline':>11} {'(b) score s':>12} {'(b) MB':>8} "
          f"{'(c) metrics s':>14} {'(c) no plots s':>15} {'(c) MB':>8}")
    for n, r in report["sizes"].items():
        a = f"{r['a_cosine']['trials_per_s'] / 1e6:>15.2f} {r['a_speedup_vs_baseline']:>11.0f}" if "a_cosine" in r \
            else f"{'-':>15} {'-':>11}"
        print(f"{int(n):>12,} {a} {r['b_score_command']['wall_s']:>12.2f} {r['b_score_command']['peak_rss_mb']:>8.0f} "
              f"{r['c_compute_metrics']['wall_s']:>14.2f} {r['c_compute_metrics_no_plots']['wall_s']:>15.2f} "
              f"{r['c_compute_metrics']['peak_rss_mb']:>8.0f}")
    print("\ntargets (issue 10):")
    for n, r in report["sizes"].items():
        b, c = r["b_score_command"], r["c_compute_metrics"]
        if int(n) == 1_000_000:
            print(f"  1 M trials file to file <= 1.5 s: {b['wall_s']:.2f} s "
                  f"-> {'met' if r['targets']['b_1M_under_1.5s'] else 'NOT met'}")
            print(f"  compute-metrics on 1 M scores <= 1.5 s: {r['c_compute_metrics_no_plots']['wall_s']:.2f} s "
                  f"-> {'met' if r['targets']['c_1M_no_plots_under_1.5s'] else 'NOT met'}")
        print(f"  {int(n):,} trials under 2 GB: score {b['peak_rss_mb']:.0f} MB, compute-metrics "
              f"{c['peak_rss_mb']:.0f} MB -> {'met' if r['targets']['b_c_under_2GB'] else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 million trials, then (b) and (c) only on --memory-trials")
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated trial counts")
    parser.add_argument("--memory-trials", type=int, default=10_000_000,
                        help="--quick: trials of the memory check (0: none)")
    parser.add_argument("--dim", type=int, default=256, help="embedding dimension")
    parser.add_argument("--baseline-trials", type=int, default=20000, help="trials timed in the per-trial loop")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "score_bench.json"))
    parser.add_argument("--keep", default=None, help="copy the generated data here (debugging)")
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scoring", nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scoring:
        Path(args.result).write_text(json.dumps(child_scoring(Path(args.scoring[0]), args.scoring[1])))
        return
    if args.baseline:
        Path(args.result).write_text(json.dumps(child_baseline(Path(args.baseline[0]), int(args.baseline[1]))))
        return
    if args.measure:
        child_measure(Path(args.result), args.command)
        return

    runs = [(1_000_000, False)] + ([(args.memory_trials, True)] if args.memory_trials else []) if args.quick else \
        [(int(float(n)), False) for n in args.sizes.split(",")]
    report = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "numpy": np.__version__, "cpus": os.cpu_count(),
                          "threads": os.environ.get("PYSPEAKER_THREADS", "default"),
                          "load_average_start": os.getloadavg()},
              "sizes": {}}
    keep = Path(args.keep) if args.keep else None
    for n, commands_only in runs:
        report["sizes"][str(n)] = run_size(n, args.dim, args.baseline_trials, keep, commands_only)
    report["machine"]["load_average_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    _print_summary(report)


if __name__ == "__main__":
    main()
