"""Data-parallel micro-batch schedule for one optimizer step: pack, align the count, distribute over ranks.

`plan_dp_micro_batches` first-fit packs the step's samples under the (CP-scaled) token budget, splits the
largest multi-sample micro-batches until their number is a multiple of `dp_size` (every rank must run the
same number of forward/backward passes, which pipeline parallelism requires), then hands each rank the same
number of micro-batches: Karmarkar-Karp on their token (or FLOPs) totals with `balance=True`
(`--balance-data`), else strided round-robin. Splitting only ever makes micro-batches smaller, so the token
budget still holds. It returns sample indices and never touches tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

from slime.buffer.balancing import Cost, balance_partitions, estimate_flops, greedy_partition
from slime.buffer.packing import pack_micro_batches
from slime.types import ConfigError, ContractError


def _check_dp(dp_size: int) -> None:
    if isinstance(dp_size, bool) or not isinstance(dp_size, int) or dp_size < 1:
        raise ConfigError(f"dp_size is {dp_size!r}; the data-parallel size must be an int >= 1.")


def _split_in_two(micro_batch: list[int], lengths: Sequence[int]) -> tuple[list[int], list[int]]:
    sizes = [lengths[i] for i in micro_batch]
    left, right = greedy_partition(sizes, 2)
    return [micro_batch[j] for j in left], [micro_batch[j] for j in right]


def align_micro_batch_count(plan: Sequence[Sequence[int]], lengths: Sequence[int], multiple: int) -> list[list[int]]:
    """Split the heaviest multi-sample micro-batches in two until `len(plan) % multiple == 0`.

    Raises:
        ContractError: there are fewer samples than `multiple` micro-batches would need.
    """
    _check_dp(multiple)
    out = [list(mb) for mb in plan]
    while len(out) % multiple:
        candidates = [j for j, mb in enumerate(out) if len(mb) > 1]
        if not candidates:
            raise ContractError(
                f"cannot make {len(out)} micro-batches a multiple of {multiple}: every micro-batch holds one sample. "
                "Each data-parallel rank needs at least one sample per step; raise the global batch size."
            )
        j = max(candidates, key=lambda c: (sum(lengths[i] for i in out[c]), -c))
        out[j : j + 1] = _split_in_two(out[j], lengths)
    return out


def distribute_micro_batches(
    plan: Sequence[Sequence[int]],
    lengths: Sequence[int],
    dp_size: int,
    *,
    balance: bool = True,
    cost: Cost = "tokens",
    hidden_size: int = 4096,
) -> list[list[list[int]]]:
    """Give each of `dp_size` ranks `len(plan) / dp_size` micro-batches (plan order kept within a rank)."""
    _check_dp(dp_size)
    if len(plan) % dp_size:
        raise ContractError(f"{len(plan)} micro-batches do not split over {dp_size} ranks; align them first.")
    if not balance:
        return [[list(mb) for mb in plan[r::dp_size]] for r in range(dp_size)]
    if cost == "flops":
        totals = [sum(estimate_flops(lengths[i], hidden_size=hidden_size) for i in mb) for mb in plan]
    else:
        totals = [sum(lengths[i] for i in mb) for mb in plan]
    parts = balance_partitions(totals, dp_size, equal_size=True)
    return [[list(plan[j]) for j in part] for part in parts]


def plan_dp_micro_batches(
    lengths: Sequence[int],
    *,
    dp_size: int,
    max_tokens_per_gpu: int,
    cp_size: int = 1,
    balance: bool = True,
    cost: Cost = "tokens",
) -> list[list[list[int]]]:
    """Per DP rank, its micro-batches (lists of sample indices) for one step; all ranks get the same count.

    `len(lengths)` must be a multiple of `dp_size` (as `BatchConfig` guarantees for a step), which is what makes
    alignment always possible: at worst every sample is its own micro-batch.
    """
    plan = pack_micro_batches(lengths, max_tokens_per_gpu, cp_size=cp_size)
    plan = align_micro_batch_count(plan, lengths, dp_size)
    return distribute_micro_batches(plan, lengths, dp_size, balance=balance, cost=cost)
