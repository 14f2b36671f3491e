"""Stage 1 driver: audio of a data dir -> features -> a complete feature store directory.

``features/<feat-id>/<set>/`` holds feats.h5, manifest.json, utt2spk, spk2utt (and feats.scp/ark
with the ark format). The directory is built under a temporary name and renamed when complete.
With several jobs, each job writes a part store of a contiguous slice of the sorted utterances and
the parts are concatenated in order, which keeps the store sorted.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from pyspeaker import __version__
from pyspeaker.fileio import atomic_dir
from pyspeaker.log import get_logger

log = get_logger(__name__)


def data_checksum(data_dir: Path) -> str:
    """sha1 over the files that decide the store's content (audio list, segments, speakers); the
    store keeps copies of utt2spk and spk2utt, so a change in either makes it out of date."""
    h = hashlib.sha1()
    for name in ("wav.scp", "segments", "utt2spk", "spk2utt"):
        p = data_dir / name
        h.update(name.encode() + b"\0")
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def store_dir(features_root: Path, cfg, data_dir: Path, name: str | None = None) -> Path:
    return Path(features_root) / cfg.feat_id() / (name or Path(data_dir).resolve().name)


def is_up_to_date(out: Path, cfg, data_dir: Path) -> bool:
    """The store exists for this config and this data dir's content. The data dir is validated
    first (without decoding audio), so an inconsistent one is never reported up to date."""
    from pyspeaker.data import DataDir

    DataDir.load(data_dir, validate=True)
    manifest = out / "manifest.json"
    if not manifest.is_file() or not (out / "feats.h5").is_file():
        return False
    m = json.loads(manifest.read_text())
    return m.get("feat_id") == cfg.feat_id() and m.get("data_checksum") == data_checksum(data_dir)


def compute_part(cfg, data_dir: Path, utts: list[str] | None, out_h5: Path, progress: bool | None = None) -> tuple[int, int]:
    """Compute features of ``utts`` (all by default) of ``data_dir`` into the store file ``out_h5``."""
    from tqdm import tqdm

    from pyspeaker.audio import iter_data_dir_audio
    from pyspeaker.data import DataDir
    from pyspeaker.features import FeatureExtractor
    from pyspeaker.store.features import FeatureStoreWriter

    data = DataDir.load(data_dir, validate=False)
    utts = list(data.utts) if utts is None else utts
    extractor = FeatureExtractor(cfg)
    attrs = {"feat_id": cfg.feat_id(), "config": json.dumps(cfg.to_dict(), sort_keys=True)}
    with FeatureStoreWriter(out_h5, cfg.dim, attrs) as writer:
        for utt, samples, rate in tqdm(iter_data_dir_audio(data, utts, expected_sample_rate=cfg.sample_frequency),
                                       total=len(utts), desc="features", unit="utt", leave=False,
                                       disable=True if progress is False else None, dynamic_ncols=True):
            writer.add(utt, extractor(samples, rate))
        return writer.num_utts, writer.num_frames


def build_store(cfg, data_dir: Path, out: Path, nj: int = 1, cmd: str = "local", write_ark: bool = False,
                compress: bool = False, conf_args: list[str] | None = None, progress: bool | None = None) -> dict:
    """Make the complete store directory ``out``; returns its manifest."""
    from pyspeaker.data import DataDir, split_data_dir
    from pyspeaker.parallel import run_jobs
    from pyspeaker.store.features import FeatureStore, merge_stores, write_kaldi_feats

    data_dir = Path(data_dir)
    data = DataDir.load(data_dir, validate=True)
    t0 = time.time()
    attrs = {"feat_id": cfg.feat_id(), "config": json.dumps(cfg.to_dict(), sort_keys=True)}
    with atomic_dir(out) as tmp:
        if nj <= 1:
            n_utts, n_frames = compute_part(cfg, data_dir, None, tmp / "feats.h5", progress)
        else:
            parts = split_data_dir(data, nj)
            (tmp / "split").mkdir()
            jobs, logs, part_files = [], [], []
            for j, utts in enumerate(parts, 1):
                ulist = tmp / "split" / f"utts.{j}"
                ulist.write_text("".join(u + "\n" for u in utts))
                part = tmp / "split" / f"feats.{j}.h5"
                part_files.append(part)
                jobs.append([sys.executable, "-m", "pyspeaker", "make-features", "--data-dir", str(data_dir),
                             *(conf_args or []), "--job-utts", str(ulist), "--job-out", str(part), "--no-progress"])
                logs.append(out.parent / "log" / f"make_features.{out.name}.{j}.log")
            log.info("running %d jobs (--cmd %s); logs: %s", nj, cmd, logs[0].parent / f"make_features.{out.name}.*.log")
            run_jobs(cmd, jobs, logs)
            n_utts, n_frames = merge_stores(part_files, tmp / "feats.h5", attrs)
            shutil.rmtree(tmp / "split")
        if write_ark:
            write_kaldi_feats(FeatureStore(tmp / "feats.h5"), tmp, out, compress=compress)
        for name in ("utt2spk", "spk2utt"):
            if (data_dir / name).is_file():
                shutil.copyfile(data_dir / name, tmp / name)
        manifest = {
            "feat_id": cfg.feat_id(), "config": cfg.to_dict(), "data_dir": str(data_dir.resolve()),
            "data_checksum": data_checksum(data_dir), "num_utts": n_utts, "num_frames": n_frames, "dim": cfg.dim,
            "formats": ["hdf5"] + (["ark"] if write_ark else []), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "seconds": round(time.time() - t0, 2), "pyspeaker_version": __version__,
        }
        if n_utts != len(data.utts):
            raise RuntimeError(f"store has {n_utts} utterances, data dir {len(data.utts)}")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
