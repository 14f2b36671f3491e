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


def run_cli(*args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m pyspeaker ARGS`` as a user would; returns the completed process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "pyspeaker", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"pyspeaker {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


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
