"""Multi-process training under ``torchrun`` (DDP): NCCL between GPUs, gloo between CPU processes.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them training runs in one process and
every helper here is a no-op. Under torchrun the process group is set up even for a single
process, so ``torchrun --nproc-per-node 1`` exercises the whole DDP path on one GPU.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from pyspeaker.errors import ConfigError


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


def pick_device(setting: str, local_rank: int = 0) -> torch.device:
    if setting == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={setting} but no CUDA device is available")
    if setting == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(setting)


def init(device_setting: str) -> tuple[Dist, torch.device]:
    """Join the process group torchrun set up (if any); returns (Dist, this process's device)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Dist(), pick_device(device_setting)
    import torch.distributed as dist

    info = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")),
                launched=True)
    device = pick_device(device_setting, info.local_rank)
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
    """Average floating-point buffers (BatchNorm running statistics) over processes, so that every
    process holds the same model after an epoch (DDP keeps the parameters equal, not the buffers)."""
    if not info.enabled:
        return
    import torch.distributed as dist

    for buf in module.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(info.world_size)


def state_digest(module: torch.nn.Module) -> str:
    """SHA-1 of every parameter and buffer, bit for bit (for the cross-process check)."""
    import hashlib

    h = hashlib.sha1()
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
