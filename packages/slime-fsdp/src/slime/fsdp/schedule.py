"""The data schedule of one `train()` call: optimizer steps, rank partitions and micro-batches (indices only).

Every rank holds the whole `RolloutBatch` and computes the same plan for all ranks, so nothing is
exchanged to agree on it. All ranks run the same number of micro-batches (FSDP's collectives need it);
a rank with too few samples gets empty micro-batches, which the trainer runs as zero-loss dummies. Sample
order inside a micro-batch is increasing. No tensors here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from slime.buffer import balance_partitions, get_minimum_num_micro_batch_size
from slime.types import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BatchingPlan:
    """How samples become micro-batches: token-budgeted first-fit count, or a fixed number of samples."""

    world_size: int
    micro_batch_size: int = 1
    max_tokens_per_gpu: int | None = None
    """Set: dynamic batch size (`--use-dynamic-batch-size`); None: `micro_batch_size` samples each."""


def split_steps(
    num_samples: int, *, global_batch_size: int | None, num_steps_per_rollout: int | None
) -> list[list[int]]:
    """Consecutive sample indices of each optimizer step; trailing samples that fill no step are dropped.

    Raises:
        ConfigError: the step size is larger than the batch.
    """
    if num_steps_per_rollout is not None:
        step_size = num_samples // num_steps_per_rollout
        if step_size < 1:
            raise ConfigError(
                f"`num_steps_per_rollout`={num_steps_per_rollout} exceeds the {num_samples} samples of the rollout; "
                "lower --num-steps-per-rollout or raise --rollout-batch-size."
            )
    elif global_batch_size is not None:
        step_size = global_batch_size
        if step_size > num_samples:
            raise ConfigError(
                f"`global_batch_size`={global_batch_size} exceeds the {num_samples} samples of the rollout; "
                "lower --global-batch-size."
            )
    else:
        step_size = num_samples
    num_steps = num_samples // step_size
    return [list(range(s * step_size, (s + 1) * step_size)) for s in range(num_steps)]


def _pick(items: Sequence[int], positions: Sequence[int]) -> list[int]:
    return sorted(items[p] for p in positions)


def partition_ranks(indices: Sequence[int], lengths: Sequence[int], world_size: int) -> list[list[int]]:
    """Split `indices` over ranks with balanced tokens (Karmarkar-Karp); equal counts when they divide evenly."""
    if world_size == 1:
        return [list(indices)]
    sizes = [lengths[i] for i in indices]
    equal = len(indices) % world_size == 0
    parts = balance_partitions(sizes, world_size, equal_size=equal) if len(indices) >= world_size else None
    if parts is None:  # fewer samples than ranks: one each, the rest idle
        return [[indices[r]] if r < len(indices) else [] for r in range(world_size)]
    return [_pick(indices, part) for part in parts]


def _num_micro_batches(indices: Sequence[int], lengths: Sequence[int], plan: BatchingPlan) -> int:
    if plan.max_tokens_per_gpu is not None:
        return get_minimum_num_micro_batch_size([lengths[i] for i in indices], plan.max_tokens_per_gpu)
    return -(-len(indices) // plan.micro_batch_size)


def _split(indices: Sequence[int], lengths: Sequence[int], count: int, plan: BatchingPlan) -> list[list[int]]:
    if plan.max_tokens_per_gpu is None:
        chunks = [list(indices[s : s + plan.micro_batch_size]) for s in range(0, len(indices), plan.micro_batch_size)]
    elif len(indices) <= count:
        chunks = [[i] for i in indices]
    else:
        parts = balance_partitions([lengths[i] for i in indices], count)
        chunks = [_pick(indices, part) for part in parts]
        chunks.sort(key=lambda c: c[0] if c else len(lengths))
    return chunks + [[] for _ in range(count - len(chunks))]


def plan_step(indices: Sequence[int], lengths: Sequence[int], plan: BatchingPlan) -> list[list[list[int]]]:
    """Micro-batches of every rank for one step: `result[rank][k]` = sample indices of micro-batch k.

    Args:
        indices: the step's sample indices into the rollout batch.
        lengths: total tokens (prompt + response) of every sample of the rollout batch.
        plan: world size and micro-batch sizing.
    """
    ranks = partition_ranks(indices, lengths, plan.world_size)
    count = max(1, max(_num_micro_batches(part, lengths, plan) for part in ranks))
    return [_split(part, lengths, count, plan) for part in ranks]
