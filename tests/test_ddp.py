"""Distributed training: 2 CPU processes (gloo) launched by steps/train.sh through real torchrun."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyspeaker.training.checkpoint import load_checkpoint, model_from_checkpoint

from conftest import REPO


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is not installed next to this Python")
def test_two_cpu_processes_see_disjoint_data_and_end_identical(tmp_path, speaker_store):
    exp = tmp_path / "exp"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    overrides = ("train.max_epoch=2 data.batch_size=3 data.crop_frames=30 model.nOut=16 optim.lr=0.005 "
                 "loss.name=angleproto")
    proc = subprocess.run(["bash", "steps/train.sh", "--ngpu", "0", "--nproc", "2", "--overrides", overrides,
                           str(speaker_store), str(exp)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torchrun: 1 node(s) x 2 processes (CPU, gloo)" in proc.stderr
    log = (exp / "train.log").read_text()
    # the sampler gave each process its own share of every epoch ...
    for epoch in (1, 2):
        assert f"epoch {epoch}: 2 processes trained on disjoint data (12 utterances each)" in log
    # ... and DDP kept them in step: parameters and batch-norm statistics are identical at the end
    assert "all 2 processes end with identical weights" in log
    # only the first process writes: one set of files, one log of the run
    assert log.count("Model ResNetSE34L has") == 1
    assert "3 speakers x 2 utterances of 30 frames per step per process, 2 processes; 2 steps per epoch" in log
    assert sorted(p.name for p in (exp / "checkpoints").iterdir()) == ["epoch_0001.pt", "epoch_0002.pt", "final.pt",
                                                                       "init.pt"]
    rows = (exp / "metrics.tsv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch\tloss")
    final = load_checkpoint(exp / "checkpoints" / "final.pt")
    assert final["epoch"] == 2 and final["world_size"] == 2 and "rng" not in final  # epochs re-seed themselves
    model, _ = model_from_checkpoint(exp / "checkpoints" / "final.pt")
    assert model(torch.randn(2, 40, 20)).shape == (2, 16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the check would run for minutes")
def test_gpu_check_says_so_without_a_gpu():
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to check"


@pytest.mark.slow
def test_gpu_check_script_runs_both_cases_on_the_cpu(tmp_path):
    """The script's own smoke mode: the store and augmented-audio cases, one process and torchrun,
    each reporting crops/s and the data-wait share (what a lent GPU would print, without memory)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYSPEAKER_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--device", "cpu", "--steps", "2", "--batch", "8",
                           "--speakers", "4"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    import re

    rates = [line for line in lines if re.search(r"\d+ crops/s, data wait +[\d.]+ % \(medians of epochs 2\+\)$", line)]
    assert [line.split()[1:3] for line in rates] == [["store,", "single"], ["store,", "torchrun,"],
                                                     ["augmented,", "single"], ["augmented,", "torchrun,"]]
    assert sum("end with identical weights" in line for line in lines) == 2 and lines[-1] == "gpu_check: OK"
