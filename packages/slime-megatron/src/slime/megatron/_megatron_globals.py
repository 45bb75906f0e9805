"""The only module that touches Megatron's global state (`megatron.core.parallel_state`, the RNG tracker).

It starts torch.distributed (NCCL on GPUs, gloo on CPU; from the usual `RANK`/`WORLD_SIZE`/`MASTER_*` variables,
or a single process when they are absent), creates Megatron's model-parallel groups, seeds, and answers
"which rank / group am I" questions for the rest of the package. It builds no model and moves no tensor.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import random

import torch
import torch.distributed as dist

from megatron.core import parallel_state as mpu
from megatron.core import tensor_parallel


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ParallelSizes:
    """Megatron's parallel degrees, as given by `--tensor-model-parallel-size` & co."""

    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    etp: int | None = None
    vpp: int | None = None


def device() -> torch.device:
    """The accelerator this rank trains on: `cuda:<LOCAL_RANK>` when CUDA exists, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed(*, backend: str | None = None, timeout_minutes: int = 10) -> None:
    """Start the default process group once (idempotent); a lone process gets a world of one on a free port."""
    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend=chosen, timeout=datetime.timedelta(minutes=timeout_minutes))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def initialize_model_parallel(sizes: ParallelSizes, *, timeout_minutes: int = 10) -> None:
    """Create Megatron's TP/PP/CP/EP/DP groups (once per process; a second call must ask for the same sizes)."""
    if mpu.model_parallel_is_initialized():
        current = (mpu.get_tensor_model_parallel_world_size(), mpu.get_pipeline_model_parallel_world_size())
        if current != (sizes.tp, sizes.pp):
            raise RuntimeError(f"model parallel already initialized with (tp, pp)={current}, asked {sizes}")
        return
    mpu.initialize_model_parallel(
        tensor_model_parallel_size=sizes.tp,
        pipeline_model_parallel_size=sizes.pp,
        virtual_pipeline_model_parallel_size=sizes.vpp,
        context_parallel_size=sizes.cp,
        expert_model_parallel_size=sizes.ep,
        expert_tensor_parallel_size=sizes.etp,
        distributed_timeout_minutes=timeout_minutes,
    )


def seed_everything(seed: int) -> None:
    """Seed Python, torch and Megatron's tensor-parallel RNG tracker (different streams per TP rank, as Megatron)."""
    offset = 100 * mpu.get_pipeline_model_parallel_rank()
    random.seed(seed + offset)
    torch.manual_seed(seed + offset)
    tensor_parallel.model_parallel_cuda_manual_seed(seed + offset)


def reset_model_parallel() -> None:
    """Drop Megatron's groups but keep the default process group, so a new layout can be initialised."""
    if mpu.model_parallel_is_initialized():
        mpu.destroy_model_parallel()


def destroy() -> None:
    """Tear down Megatron's groups and the default process group (tests and clean shutdown)."""
    if mpu.model_parallel_is_initialized():
        mpu.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()


def tp_group() -> dist.ProcessGroup:
    """Tensor-parallel group of this rank."""
    return mpu.get_tensor_model_parallel_group()


def tp_rank() -> int:
    """Rank within the tensor-parallel group."""
    return mpu.get_tensor_model_parallel_rank()


def tp_size() -> int:
    """Tensor-parallel world size."""
    return mpu.get_tensor_model_parallel_world_size()


def dp_group() -> dist.ProcessGroup:
    """Data-parallel group (including context-parallel ranks, as gradients are reduced)."""
    return mpu.get_data_parallel_group(with_context_parallel=True)


def dp_group_no_cp() -> dist.ProcessGroup:
    """Gloo group of the ranks holding different data shards (for object collectives on the host)."""
    return mpu.get_data_parallel_group_gloo(with_context_parallel=False)


def dp_rank() -> int:
    """Rank within the data-parallel group (without CP: the index of this rank's data shard)."""
    return mpu.get_data_parallel_rank()


def dp_size() -> int:
    """Number of data shards."""
    return mpu.get_data_parallel_world_size()


def pp_size() -> int:
    """Pipeline-parallel world size."""
    return mpu.get_pipeline_model_parallel_world_size()


def pp_rank() -> int:
    """Rank within the pipeline."""
    return mpu.get_pipeline_model_parallel_rank()


def is_first_stage() -> bool:
    """Whether this rank holds the embedding (first pipeline stage)."""
    return mpu.is_pipeline_first_stage()


def is_last_stage() -> bool:
    """Whether this rank holds the output layer (last pipeline stage), where log-probs and losses live."""
    return mpu.is_pipeline_last_stage()


def pp_last_rank() -> int:
    """Global rank of the last stage in this rank's pipeline (source of broadcast log-probs)."""
    return mpu.get_pipeline_model_parallel_last_rank()


def pp_group() -> dist.ProcessGroup:
    """Pipeline-parallel group."""
    return mpu.get_pipeline_model_parallel_group()


def world_rank() -> int:
    """Global rank."""
    return dist.get_rank()
