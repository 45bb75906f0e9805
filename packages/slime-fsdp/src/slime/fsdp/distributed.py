"""Process-group setup for the FSDP trainer, without Ray: a plain process, `torchrun`, or spawned workers.

`init_distributed` joins (or creates) the default process group: gloo on CPU; on CUDA both gloo (CPU
tensors, objects) and NCCL (CUDA tensors) through one `cpu:gloo,cuda:nccl` group. It does not place
processes or choose ports for others; the caller (slime.train, torchrun, a test) does.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class DistInfo:
    """Where this process sits: its rank, the world size and the device it trains on."""

    rank: int
    world_size: int
    device: torch.device


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda:<LOCAL_RANK> when CUDA is available, else cpu."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(device)


def init_distributed(device: str = "auto", *, timeout_s: float = 1800.0) -> DistInfo:
    """Join the default process group, creating it when needed, and return this rank's `DistInfo`.

    With `RANK`/`WORLD_SIZE`/`MASTER_ADDR`/`MASTER_PORT` in the environment (torchrun, Ray) it uses them;
    without them it makes a single-process group over an in-memory store. Already-initialised groups are
    reused as they are.
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s)
        if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend, timeout=timeout)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), device=dev)


def device_mesh(info: DistInfo) -> DeviceMesh:
    """The 1-D data-parallel mesh over every rank of the default group."""
    return init_device_mesh(info.device.type, (info.world_size,))


def all_gather_objects(obj: object, world_size: int) -> list[object]:
    """Every rank's `obj`, in rank order (pickled through the default group)."""
    if world_size == 1:
        return [obj]
    out: list[object] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def sum_over_ranks(values: dict[str, float], world_size: int) -> dict[str, float]:
    """Sum float metrics over ranks; a key missing on a rank (it had no sample) counts as 0 there."""
    total: dict[str, float] = {}
    for part in all_gather_objects(dict(values), world_size):
        for key, value in part.items():  # type: ignore[attr-defined]  # every rank sends a dict
            total[key] = total.get(key, 0.0) + float(value)
    return total
