"""Distributed edge cases with real gloo process groups on 127.0.0.1 (one Python process per rank,
started here with torchrun's environment variables but without torchrun's agent, so that a process
that is left waiting shows up as a hang instead of being killed by the agent)."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from pyspeaker.errors import ConfigError
from pyspeaker.training import distributed

from conftest import REPO

HANG_S = 120  # a rank still running after this long is waiting for a peer that is gone

_HEADER = """\
import sys
from pathlib import Path

import torch

from pyspeaker.errors import PyspeakerError
from pyspeaker.training import distributed

torch.set_num_threads(1)
OUT = Path(sys.argv[1])
RANK = int(sys.argv[2])


def main():
{body}


code = 0
try:
    main()
except PyspeakerError as e:  # as the CLI does
    print(f"error: {{e.format()}}", file=sys.stderr)
    code = 1
finally:  # as train() does: a process group left at exit can abort the interpreter's teardown
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
# and leave as the CLI does (once pyarrow is loaded, its thread pools can abort the teardown)
from pyspeaker.cli import _leave

_leave(code)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(tmp_path: Path, body: str, world: int) -> tuple[list[subprocess.CompletedProcess], float]:
    """Run ``body`` (the inside of ``main()``) in ``world`` processes of one gloo group; returns each
    rank's completed process and the seconds until the last one ended. Fails on a hang."""
    script = tmp_path / "worker.py"
    script.write_text(_HEADER.format(body=textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")))
    port = _free_port()
    procs = []
    t0 = time.monotonic()
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path), str(rank)], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = []
    try:
        for rank, p in enumerate(procs):
            left = max(1.0, HANG_S - (time.monotonic() - t0))
            try:
                out, err = p.communicate(timeout=left)
            except subprocess.TimeoutExpired:
                pytest.fail(f"rank {rank} of {world} still running after {HANG_S} s: it waits for a peer that "
                            f"stopped; finished ranks: " + "; ".join(f"rank {i} rc {d.returncode}: "
                                                                    f"{d.stderr[-500:]}" for i, d in enumerate(done)))
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done, time.monotonic() - t0


# ----------------------------------------------------------------------------- average_buffers

def test_average_buffers_keeps_constant_buffers_bit_identical_with_three_processes(tmp_path):
    # (x + x + x) / 3 is not x in floating point: averaging a buffer that every process holds
    # unchanged (the front-end's window and mel filterbank) must leave it alone
    body = """
    from pyspeaker.models.frontend import MelSpec, make_torchfb

    info, _ = distributed.init("cpu")
    torch.manual_seed(0)  # the same constants on every process
    net = torch.nn.Sequential(make_torchfb(40, MelSpec()), torch.nn.BatchNorm1d(6))
    net[0].register_buffer("scratch", torch.rand(5) / 7, persistent=False)
    bn = net[1]
    with torch.no_grad():  # what training leaves: statistics that differ between processes
        bn.running_mean.copy_(torch.arange(6) / 3 + RANK / 7)
        bn.running_var.copy_(1 + RANK * torch.linspace(0.1, 0.6, 6) / 3)
    before = {k: v.clone() for k, v in net.named_buffers()}
    distributed.average_buffers(info, net)
    torch.save({"before": before, "after": dict(net.named_buffers())}, OUT / f"rank{RANK}.pt")
    distributed.shutdown(info)
    """
    done, _ = _run_ranks(tmp_path, body, world=3)
    assert [d.returncode for d in done] == [0, 0, 0], [d.stderr[-2000:] for d in done]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(3)]
    for r, got in enumerate(ranks):
        for name in ("0.spectrogram.window", "0.mel_scale.fb", "0.scratch"):
            assert torch.equal(got["after"][name], got["before"][name]), (r, name)
        for name in ("1.running_mean", "1.running_var"):
            mean = sum(x["before"][name].double() for x in ranks) / 3
            torch.testing.assert_close(got["after"][name].double(), mean, rtol=0, atol=1e-6)
            assert torch.equal(got["after"][name], ranks[0]["after"][name])  # the same model everywhere
        assert int(got["after"]["1.num_batches_tracked"]) == 0
    # the test is not vacuous: the old sum-then-divide does change the filterbank
    fb = ranks[0]["before"]["0.mel_scale.fb"]
    assert not torch.equal((fb + fb + fb) / 3, fb)


# ----------------------------------------------------------------------------- a failure on one rank

def _assert_all_stopped_with(done, seconds: float, message: str) -> None:
    assert all(d.returncode != 0 for d in done), [(d.returncode, d.stderr[-1500:]) for d in done]
    for rank, d in enumerate(done):
        assert message in d.stderr, (rank, d.stderr[-3000:])
    assert seconds < HANG_S / 2


def test_agree_raises_one_ranks_error_on_every_rank(tmp_path):
    body = """
    from pyspeaker.errors import DataError

    info, _ = distributed.init("cpu")
    with distributed.all_or_none(info):
        if RANK == 1:
            raise DataError("bad utterance", path="x/feats.h5")
    distributed.all_reduce_sum(info, torch.zeros(3))  # the next collective: never reached
    print("carried on", file=sys.stderr)
    """
    done, seconds = _run_ranks(tmp_path, body, world=2)
    assert [d.returncode for d in done] == [1, 1]
    assert done[1].stderr.strip().splitlines()[-1] == "error: x/feats.h5: bad utterance"
    assert done[0].stderr.strip().splitlines()[-1] == "error: process 1 of 2 failed: x/feats.h5: bad utterance"
    assert all("carried on" not in d.stderr for d in done)
    assert seconds < HANG_S / 2

    # nobody fails: everybody carries on
    body = """
    info, _ = distributed.init("cpu")
    with distributed.all_or_none(info):
        pass
    distributed.all_reduce_sum(info, torch.zeros(3))
    print("carried on", file=sys.stderr)
    distributed.shutdown(info)
    """
    done, _ = _run_ranks(tmp_path, body, world=2)
    assert [d.returncode for d in done] == [0, 0] and all("carried on" in d.stderr for d in done)


def test_shard_check_failing_on_rank_0_stops_every_rank(tmp_path):
    # the processes report overlapping utterances: only rank 0 compares them
    body = """
    from pyspeaker.training.distributed import check_disjoint_shards as _check_shards

    info, _ = distributed.init("cpu")
    try:
        _check_shards(info, [[0, 1, 2], [3, 4, 5]], 1)
        distributed.all_reduce_sum(info, torch.zeros(3))  # what the trainer does next
    finally:
        distributed.shutdown(info)
    """
    done, seconds = _run_ranks(tmp_path, body, world=2)
    _assert_all_stopped_with(done, seconds, "epoch 1: processes shared training utterances (sampler bug)")
    assert "error: process 0 of 2 failed: RuntimeError: epoch 1" in done[1].stderr


def test_validation_failing_on_rank_0_stops_every_rank(tmp_path):
    from conftest import make_speaker_store

    make_speaker_store(tmp_path / "store")
    body = """
    from pyspeaker.errors import DataError
    import pyspeaker.training.validation as validation
    from pyspeaker.training.config import load_config
    from pyspeaker.training.trainer import train

    class Failing:  # validation runs on rank 0 only
        def __init__(self, *args, **kwargs):
            pass

        def describe(self):
            return "a failing validator"

        def __call__(self, model, device):
            raise DataError("validation features are unreadable", path="valid/feats.h5")

    validation.Validator = Failing
    cfg = load_config(None, ["train.max_epoch=2", "data.batch_size=2", "data.crop_frames=30", "model.nOut=16",
                             "model.name=TDNN", "model.hidden=32", "model.stats_dim=48", "loss.name=softmax",
                             "train.test_interval=1", "valid.trials=unused", "train.device=cpu"])
    train(cfg, OUT / "store", OUT / "exp", progress=False)
    """
    done, seconds = _run_ranks(tmp_path, body, world=2)
    _assert_all_stopped_with(done, seconds, "valid/feats.h5: validation features are unreadable")
    assert done[0].stderr.strip().splitlines()[-1] == "error: valid/feats.h5: validation features are unreadable"
    assert done[1].stderr.strip().splitlines()[-1] == ("error: process 0 of 2 failed: valid/feats.h5: validation "
                                                       "features are unreadable")
    assert not (tmp_path / "exp" / "checkpoints" / "epoch_0001.pt").exists()


# ----------------------------------------------------------------------------- train.device under torchrun

def _fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_device_follows_local_rank(monkeypatch, caplog):
    _fake_cuda(monkeypatch)
    assert distributed.device_name("auto", 1, 2) == "cuda:1"
    assert distributed.device_name("cuda", 1, 2) == "cuda:1"
    assert distributed.device_name("cuda:1", 1, 2) == "cuda:1"
    assert distributed.device_name("cpu", 1, 2) == "cpu"
    assert distributed.device_name("cuda:3", 0, 1) == "cuda:3"  # one process per node: the GPU asked for
    with caplog.at_level(logging.WARNING, logger="pyspeaker"):
        assert distributed.device_name("cuda:0", 1, 2) == "cuda:1"
    assert "train.device=cuda:0 ignored: process 1 of 2 on this node uses cuda:1" in caplog.text
    assert "CUDA_VISIBLE_DEVICES" in caplog.text
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.device_name("auto", 1, 2) == "cpu"
    with pytest.raises(ConfigError, match="train.device=cuda:0 but no CUDA device is available"):
        distributed.device_name("cuda:0", 0, 1)


def test_init_puts_each_torchrun_process_on_its_local_gpu(monkeypatch):
    import torch.distributed as dist

    _fake_cuda(monkeypatch)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(str(d)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: chosen.append(backend))
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        info, device = distributed.init("cuda:0")
        assert (info.rank, info.local_rank, str(device)) == (rank, rank, f"cuda:{rank}")
    assert chosen == ["cuda:0", "nccl", "cuda:1", "nccl"]
