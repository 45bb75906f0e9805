"""The process world of a Megatron conversion: torch.distributed plus Megatron's model-parallel groups.

`start` joins the world torchrun describes (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, ...) or makes a world of one,
then creates Megatron's TP/PP/EP groups; called again with other sizes it rebuilds the groups, so one process
can run several conversions. `default_pipeline` is the PP degree used when a multi-rank conversion names none.
On CUDA the ranks use NCCL and their `LOCAL_RANK` GPU; without CUDA gloo (Megatron then still needs the CUDA
calls of its checkpoint code shimmed, which only the tests do). It builds no model.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist


def device() -> torch.device:
    """This rank's device: its CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def _init_process_group(timeout_minutes: int) -> None:
    if dist.is_initialized():
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if cuda else "gloo"
    timeout = datetime.timedelta(minutes=timeout_minutes)
    if "RANK" in os.environ and "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend=backend, timeout=timeout)
    else:
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)


def start(sizes: Any, *, seed: int = 1234, timeout_minutes: int = 30) -> None:
    """Join the world and create the model-parallel groups for `sizes` (`training_configs.parallel_sizes`)."""
    from megatron.core import parallel_state as mpu
    from megatron.core import tensor_parallel

    _init_process_group(timeout_minutes)
    if mpu.model_parallel_is_initialized():
        current = (mpu.get_tensor_model_parallel_world_size(), mpu.get_pipeline_model_parallel_world_size())
        if current == (sizes.tp, sizes.pp) and mpu.get_expert_model_parallel_world_size() == sizes.ep:
            return
        mpu.destroy_model_parallel()
    mpu.initialize_model_parallel(
        tensor_model_parallel_size=sizes.tp,
        pipeline_model_parallel_size=sizes.pp,
        context_parallel_size=sizes.cp,
        expert_model_parallel_size=sizes.ep,
        expert_tensor_parallel_size=sizes.etp,
        distributed_timeout_minutes=timeout_minutes,
    )
    if torch.cuda.is_available():
        # GPU initialisation draws from Megatron's per-TP-rank generators; the loaded weights replace the values.
        tensor_parallel.model_parallel_cuda_manual_seed(seed)


def stop() -> None:
    """Tear the groups and the process group down (end of a command)."""
    from megatron.core import parallel_state as mpu

    if mpu.model_parallel_is_initialized():
        mpu.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()


def is_rank0() -> bool:
    """Whether this process writes (rank 0 of the world, or the only process)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a world of one)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def default_pipeline(world_size: int, num_layers: int, tp: int) -> int:
    """The largest PP degree that divides both the ranks left after TP and the layer count (slime: PP = world)."""
    ranks = max(1, world_size // tp)
    return max(pp for pp in range(1, ranks + 1) if ranks % pp == 0 and num_layers % pp == 0)
