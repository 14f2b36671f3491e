"""Multi-process training under ``torchrun`` (DDP): NCCL between GPUs, gloo between CPU processes.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them training runs in one process and
every helper here is a no-op. Under torchrun the process group is set up even for a single
process, so ``torchrun --nproc-per-node 1`` exercises the whole DDP path on one GPU.
"""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from pyspeaker.errors import ConfigError, PyspeakerError
from pyspeaker.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun: a process group exists

    @property
    def enabled(self) -> bool:
        return self.launched

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def device_name(setting: str, local_rank: int = 0, local_world_size: int = 1) -> str:
    """The device this process trains on, for ``train.device`` = ``setting`` ("auto", "cpu", "cuda",
    "cuda:N") as process ``local_rank`` of ``local_world_size`` on its node.

    With several processes on a node each must have its own GPU, so an explicit ``cuda:N`` that is
    not ``cuda:LOCAL_RANK`` is overridden with a warning rather than refused: the same config then
    serves a one-GPU run and a torchrun one. To run on other GPUs, choose them with
    CUDA_VISIBLE_DEVICES. With one process on the node, ``cuda:N`` is honoured.
    """
    if setting == "auto":
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={setting} but no CUDA device is available")
    if setting == "cuda":
        return f"cuda:{local_rank}"
    if setting.startswith("cuda:") and local_world_size > 1 and setting != f"cuda:{local_rank}":
        log.warning("train.device=%s ignored: process %d of %d on this node uses cuda:%d (each process of a "
                    "torchrun job follows LOCAL_RANK; choose the GPUs with CUDA_VISIBLE_DEVICES)", setting,
                    local_rank, local_world_size, local_rank)
        return f"cuda:{local_rank}"
    return setting


def pick_device(setting: str, local_rank: int = 0, local_world_size: int = 1) -> torch.device:
    return torch.device(device_name(setting, local_rank, local_world_size))


def init(device_setting: str) -> tuple[Dist, torch.device]:
    """Join the process group torchrun set up (if any); returns (Dist, this process's device)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Dist(), pick_device(device_setting)
    import torch.distributed as dist

    info = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")),
                launched=True)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    device = pick_device(device_setting, info.local_rank, local_world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30), **kwargs)
    return info, device


def shutdown(info: Dist) -> None:
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(info: Dist) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def _comm_device(t: torch.Tensor) -> torch.device:
    """NCCL only moves CUDA tensors: CPU bookkeeping tensors travel through the current GPU."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return t.device


def all_reduce_sum(info: Dist, t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over processes, in place."""
    if info.enabled:
        import torch.distributed as dist

        moved = t.to(_comm_device(t))
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        if moved is not t:
            t.copy_(moved.to(t.device))
    return t


def all_gather(info: Dist, t: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``t`` (same shape everywhere), in rank order, on ``t``'s device."""
    if not info.enabled:
        return [t]
    import torch.distributed as dist

    moved = t.to(_comm_device(t))
    out = [torch.empty_like(moved) for _ in range(info.world_size)]
    dist.all_gather(out, moved)
    return [o.to(t.device) for o in out]


def all_gather_object(info: Dist, obj) -> list:
    if not info.enabled:
        return [obj]
    import torch.distributed as dist

    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def average_buffers(info: Dist, module: torch.nn.Module) -> None:
    """Average the floating-point buffers that differ between processes (BatchNorm running
    statistics), so that every process holds the same model after an epoch (DDP keeps the
    parameters equal, not the buffers).

    A buffer that every process holds bit for bit the same (a front-end's window and mel
    filterbank, or any other constant) is left untouched: summing and dividing would change it,
    since (x + x + x) / 3 is not always x in floating point.
    """
    if not info.enabled:
        return
    import torch.distributed as dist

    by_kind: dict[tuple, list[torch.Tensor]] = {}
    for buf in module.buffers():
        if buf.is_floating_point() and buf.numel():
            by_kind.setdefault((buf.dtype, buf.device), []).append(buf)
    for bufs in by_kind.values():
        # three collectives per dtype, not per buffer: min, max and sum of all of them at once
        flat = torch.cat([b.detach().reshape(-1) for b in bufs])
        lo, hi = flat.clone(), flat.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(info.world_size)
        start = 0
        for b in bufs:
            stop = start + b.numel()
            if not torch.equal(lo[start:stop], hi[start:stop]):  # else the same everywhere: left bit for bit
                with torch.no_grad():
                    b.copy_(flat[start:stop].view_as(b))
            start = stop


class PeerError(PyspeakerError):
    """Raised on the processes of a distributed run that did not fail, when another one did."""


def _error_text(error: BaseException) -> str:
    if isinstance(error, PyspeakerError):
        return error.format()
    return f"{type(error).__name__}: {error}"


def agree(info: Dist, error: BaseException | None) -> None:
    """Every process says whether it failed (``error``); if any did, every process raises.

    The failing processes raise their own error, the others a :class:`PeerError` with the first
    failing process's message. Without this a check that runs on one process only (rank 0's
    shard check, validation, checkpoint writing) stops that process while the others wait in
    their next collective until the process-group timeout (30 minutes) -- or die on a
    connection error that does not say what went wrong.
    """
    if not info.enabled:
        if error is not None:
            raise error
        return
    try:
        reports = all_gather_object(info, None if error is None else _error_text(error))
    except Exception:
        if error is not None:
            raise error  # the peers are gone too: this process's own error is the one to report
        raise
    if error is not None:
        raise error
    failed = [(rank, text) for rank, text in enumerate(reports) if text is not None]
    if failed:
        rank, text = failed[0]
        raise PeerError(f"process {rank} of {info.world_size} failed: {text}")


@contextmanager
def all_or_none(info: Dist):
    """Run a block that may fail on some processes only: afterwards either every process carries
    on or every process raises (see :func:`agree`). Every process must enter the block."""
    try:
        yield
    except Exception as e:
        agree(info, e)
        raise
    agree(info, None)


def state_digest(module: torch.nn.Module) -> str:
    """SHA-1 of every parameter and buffer, bit for bit (for the cross-process check)."""
    import hashlib

    h = hashlib.sha1()
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_disjoint_shards(info: Dist, batches: list[list[int]], epoch: int) -> None:
    """Distributed runs: check that the processes trained on disjoint utterances this epoch."""
    if not info.enabled:
        return
    mine = torch.tensor([i for b in batches for i in b], dtype=torch.int64)
    every = all_gather(info, mine)
    with all_or_none(info):  # the first process checks; all stop if it fails
        if info.is_main:
            seen = torch.cat(every)
            if len(torch.unique(seen)) != len(seen):
                raise RuntimeError(f"epoch {epoch}: processes shared training utterances (sampler bug)")
            log.info("epoch %d: %d processes trained on disjoint data (%d utterances each)", epoch,
                     info.world_size, len(mine))


def check_identical(info: Dist, net: torch.nn.Module) -> None:
    """Distributed runs: every process ends with the same weights."""
    if not info.enabled:
        return
    digests = all_gather_object(info, state_digest(net))
    if len(set(digests)) != 1:
        raise RuntimeError("the processes ended with different weights: " + ", ".join(d[:8] for d in digests))
    log.info("all %d processes end with identical weights (sha1 %s)", info.world_size, digests[0][:12])
