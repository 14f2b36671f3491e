"""Shared fixtures: small real stores built with the project's own writers."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# model name -> (options, crop frames) small enough for quick CPU tests (VGGVox needs >= 40 mel
# bins and 64 frames)
TINY_MODELS = {
    "ResNetSE34L": ({"n_mels": 24}, 32),
    "ResNetSE34Half": ({"n_mels": 24}, 32),
    "ResNetSE34V2": ({"n_mels": 24}, 32),
    "VGGVox": ({"n_mels": 40}, 64),
    "TDNN": ({"n_mels": 24, "hidden": 64, "stats_dim": 96}, 32),
    "ECAPA-TDNN": ({"n_mels": 24, "channels": 64}, 32),
}


def pytest_terminal_summary(terminalreporter):
    """Say once, at the end, when the shared reference material is missing (its tests skip)."""
    if not SHARED.is_dir():
        terminalreporter.write_line(f"note: {SHARED} is not there (../shared beside the repository): the tests on "
                                    "FSDD speech and the voxceleb_trainer reference files were skipped")


RECIPE_CODE = ("run.sh", "path.sh", "utils", "steps", "local", "recipes", "conf", "pyspeaker", "pyproject.toml",
               "requirements.txt")


def copy_recipe(dst: Path) -> Path:
    """A copy of the recipe code, so that a test's data/, features/ and exp/ land next to its run.sh."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for name in RECIPE_CODE:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name,
                                                           **({"ignore": shutil.ignore_patterns("__pycache__")}
                                                              if src.is_dir() else {}))
    return dst


FBANK = str(REPO / "conf" / "fbank.conf")
# a 1-epoch TDNN of conf/tdnn_small.yaml on a tiny store: a real model in a few seconds
TINY_TDNN_TRAIN = ["--config", str(REPO / "conf" / "tdnn_small.yaml"), "--threads", "1",
         *[a for kv in ("train.max_epoch=1", "data.batch_size=8", "data.crop_frames=20", "model.nOut=16",
                        "train.device=cpu", "augment.specaugment=false") for a in ("--set", kv)]]


def write_tone_data_dir(d: Path, wav_dir: Path, n_spk=3, n_utt=4, rate=16000) -> Path:
    """A data dir of real WAV files: each speaker a tone of its own pitch, plus noise."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    d.mkdir(parents=True)
    wav_dir.mkdir(parents=True, exist_ok=True)
    wav, u2s, s2u = [], [], []
    for s in range(n_spk):
        utts = []
        for u in range(n_utt):
            utt = f"s{s}-u{u}"
            t = np.arange(int(rate * (0.4 + 0.1 * u))) / rate
            x = 0.3 * np.sin(2 * np.pi * (120 + 60 * s) * t) + 0.02 * rng.normal(size=t.size)
            sf.write(wav_dir / f"{utt}.wav", x, rate, subtype="PCM_16")
            wav.append(f"{utt} {wav_dir / f'{utt}.wav'}\n")
            u2s.append(f"{utt} s{s}\n")
            utts.append(utt)
        s2u.append(f"s{s} {' '.join(utts)}\n")
    (d / "wav.scp").write_text("".join(wav))
    (d / "utt2spk").write_text("".join(u2s))
    (d / "spk2utt").write_text("".join(s2u))
    return d


def run_cli(*args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m pyspeaker ARGS`` as a user would; returns the completed process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "pyspeaker", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"pyspeaker {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def run_local(script: str, *args, cwd: Path | None = None, env: dict | None = None,
              check: bool = False) -> subprocess.CompletedProcess:
    """Run a corpus preparation script, ``python local/<script>.py ARGS``, as a recipe does (``script``
    relative to the repository root, e.g. ``local/prepare_fsdd.py``); returns the completed process."""
    env = dict(os.environ if env is None else env, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def load_local(script: str):
    """Import a ``local/`` script as a module (its functions, without running its command line)."""
    import importlib.util

    path = REPO / script
    name = "local_" + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def write_embedding_dir(folder: Path, ids, x, labels=None) -> Path:
    """An embeddings folder as ``pyspeaker extract`` writes it (xvector.h5, optional utt2spk)."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "xvector.h5", "w") as f:
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("embeddings", data=np.asarray(x, dtype=np.float32))
    if labels is not None:
        (folder / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in zip(ids, labels)))
    return folder


def make_speaker_store(path: Path, num_speakers: int = 4, utts_per_speaker: int = 6, dim: int = 20,
                       lengths=(60, 90), seed: int = 0) -> Path:
    """A feature store (feats.h5 + utt2spk/spk2utt) whose speakers differ in their mean feature."""
    from pyspeaker.store.features import FeatureStoreWriter

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    centres = rng.normal(0, 1.5, (num_speakers, dim))
    utt2spk = {}
    with FeatureStoreWriter(path / "feats.h5", dim, {"feat_id": "test_0000", "config": "{}"}) as w:
        for s in range(num_speakers):
            for u in range(utts_per_speaker):
                spk, utt = f"spk{s:02d}", f"spk{s:02d}-u{u:02d}"
                n = int(rng.integers(lengths[0], lengths[1] + 1))
                w.add(utt, centres[s] + rng.normal(0, 1, (n, dim)))
                utt2spk[utt] = spk
    (path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utt2spk.items()))
    spk2utt: dict[str, list[str]] = {}
    for u, s in utt2spk.items():
        spk2utt.setdefault(s, []).append(u)
    (path / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in spk2utt.items()))
    return path


@pytest.fixture
def speaker_store(tmp_path) -> Path:
    return make_speaker_store(tmp_path / "store")
