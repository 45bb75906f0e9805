"""Data-parallel micro-batch schedule for one optimizer step: pack, align the count, distribute over ranks.

`plan_dp_micro_batches` first-fit packs the step's samples under the (CP-scaled) token budget, splits the
largest multi-sample micro-batches until their number is a multiple of `dp_size` (every rank must run the
same number of forward/backward passes, which pipeline parallelism requires), then hands each rank the same
number of micro-batches: Karmarkar-Karp on their token (or FLOPs) totals with `balance=True`
(`--balance-data`), else strided round-robin. Splitting only ever makes micro-batches smaller, so the token
budget still holds. It returns sample indices and never touches tensors.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from slime.buffer.balancing import Cost, balance_partitions, estimate_flops, greedy_partition
from slime.buffer.packing import check_lengths, first_fit, token_budget
from slime.types import ConfigError, ContractError


def _check_dp(dp_size: int) -> None:
    if isinstance(dp_size, bool) or not isinstance(dp_size, int) or dp_size < 1:
        raise ConfigError(f"dp_size is {dp_size!r}; the data-parallel size must be an int >= 1.")


def _split_in_two(micro_batch: list[int], lengths: Sequence[int]) -> tuple[list[int], list[int]]:
    """Token-balanced halves (greedy), each in sample order, the half holding the first sample first."""
    sizes = [lengths[i] for i in micro_batch]
    first, second = sorted(greedy_partition(sizes, 2), key=lambda half: half[0] if half else len(sizes))
    return [micro_batch[j] for j in first], [micro_batch[j] for j in second]


def align_micro_batch_count(plan: Sequence[Sequence[int]], lengths: Sequence[int], multiple: int) -> list[list[int]]:
    """Split the heaviest multi-sample micro-batches in two until `len(plan) % multiple == 0`.

    The halves take the place of the micro-batch they came from. Raises `ContractError` when every
    micro-batch already holds a single sample.
    """
    _check_dp(multiple)
    return _align([list(mb) for mb in plan], [sum(lengths[i] for i in mb) for mb in plan], lengths, multiple)[0]


def _align(
    plan: list[list[int]], totals: list[int], lengths: Sequence[int], multiple: int
) -> tuple[list[list[int]], list[int]]:
    missing = -len(plan) % multiple
    if not missing:
        return plan, totals
    # Only the `missing` heaviest splittable micro-batches, or halves of them, can be split: seed a small heap with
    # them. A key (position, half, half, ...) puts the halves where their micro-batch was.
    weights = [t if len(mb) > 1 else -1 for t, mb in zip(totals, plan, strict=True)]
    seeds = heapq.nlargest(missing, range(len(plan)), key=weights.__getitem__)
    heap = [(-weights[j], (j,), plan[j]) for j in seeds if weights[j] >= 0]
    heapq.heapify(heap)
    replaced: dict[tuple[int, ...], list[tuple[tuple[int, ...], list[int], int]]] = {}
    for _ in range(missing):
        if not heap:
            raise ContractError(
                f"cannot make {len(plan)} micro-batches a multiple of {multiple}: too few samples to split. "
                "Each data-parallel rank needs at least one sample per step; raise the global batch size."
            )
        _, key, mb = heapq.heappop(heap)
        replaced[key] = []
        for h, half in enumerate(_split_in_two(mb, lengths)):
            total = sum(lengths[i] for i in half)
            replaced[key].append(((*key, h), half, total))
            if len(half) > 1:
                heapq.heappush(heap, (-total, (*key, h), half))
    out_plan: list[list[int]] = []
    out_totals: list[int] = []
    done = 0
    for j in sorted({key[0] for key in replaced}):
        out_plan += plan[done:j]
        out_totals += totals[done:j]
        for mb, total in _leaves((j,), plan[j], totals[j], replaced):
            out_plan.append(mb)
            out_totals.append(total)
        done = j + 1
    return out_plan + plan[done:], out_totals + totals[done:]


def _leaves(key: tuple[int, ...], mb: list[int], total: int, replaced: dict) -> list[tuple[list[int], int]]:
    if key not in replaced:
        return [(mb, total)]
    return [leaf for child, half, t in replaced[key] for leaf in _leaves(child, half, t, replaced)]


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
    return _distribute([list(mb) for mb in plan], totals, dp_size)


def _distribute(plan: list[list[int]], totals: list[int], dp_size: int) -> list[list[list[int]]]:
    parts = balance_partitions(totals, dp_size, equal_size=True)
    return [[plan[j] for j in part] for part in parts]


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
    _check_dp(dp_size)
    cap = token_budget(max_tokens_per_gpu, cp_size)
    check_lengths(lengths)
    plan, totals = first_fit(lengths, cap)
    plan, totals = _align(plan, totals, lengths, dp_size)
    if balance and cost == "tokens":
        return _distribute(plan, totals, dp_size)
    return distribute_micro_batches(plan, lengths, dp_size, balance=balance, cost=cost)
