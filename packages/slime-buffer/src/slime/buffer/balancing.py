"""Balanced partitioning of samples (or micro-batches) over ranks: Karmarkar-Karp largest differencing.

`balance_partitions(costs, k)` splits item indices into `k` partitions whose cost sums are close
(`--balance-data`). Costs are token counts, or estimated forward FLOPs (`cost="flops"`, which weighs long
sequences more for their quadratic attention). With `equal_size=True` every partition gets the same number
of items, as a loss that averages per micro-batch needs. `greedy_partition` (longest-processing-time first)
is the baseline; `balance_partitions` returns the greedy plan on the rare inputs where it is strictly
tighter, so its max-min spread is never worse than greedy's. It does not pack micro-batches (see `packing`).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Sequence
from operator import add, itemgetter, neg
from typing import Any, Literal

from slime.types import ConfigError, ContractError

Cost = Literal["tokens", "flops"]
_Node = int | tuple | None  # a leaf index, a pair of nodes (concatenation without copying), or empty


def estimate_flops(length: int, *, hidden_size: int = 4096) -> int:
    """Forward FLOPs of one dense transformer layer on a `length`-token sequence (relative units).

    Linear layers cost `24 * h^2` per token; causal attention `2 * h * L^2` per sequence. Only ratios matter for
    balancing, so layer count and vocabulary are left out.
    """
    return 24 * hidden_size * hidden_size * length + 2 * hidden_size * length * length


def _costs(lengths: Sequence[int], cost: Cost, hidden_size: int) -> list[int]:
    if lengths and min(lengths) < 0:
        raise ContractError(f"lengths must be >= 0 (got {min(lengths)}).")
    if cost == "tokens":
        return list(lengths)
    if cost == "flops":
        return [estimate_flops(n, hidden_size=hidden_size) for n in lengths]
    raise ConfigError(f"cost is {cost!r}; use 'tokens' or 'flops' (--balance-by-flops).")


def _check(num_items: int, num_partitions: int, equal_size: bool) -> None:
    if isinstance(num_partitions, bool) or not isinstance(num_partitions, int) or num_partitions < 1:
        raise ConfigError(f"num_partitions is {num_partitions!r}; it must be an int >= 1 (e.g. the DP size).")
    if equal_size and num_items % num_partitions:
        raise ConfigError(
            f"equal_size=True needs the item count ({num_items}) to be a multiple of num_partitions "
            f"({num_partitions}). Fix: make the batch divisible by the data-parallel size, or use equal_size=False."
        )


def _flatten(node: _Node) -> list[int]:
    out: list[int] = []
    stack = [node]
    while stack:
        top = stack.pop()
        if top is None:
            continue
        if isinstance(top, int):
            out.append(top)
        else:
            stack.extend(top)
    out.sort()
    return out


class _KarmarkarKarp:
    """Largest differencing: repeatedly merge the two partial solutions with the largest spread.

    A state is k partition sums sorted descending with the matching index trees; states wait in a heap keyed by
    minus their spread. Items not yet merged ("singletons", spread = their cost) wait in a sorted list instead of
    the heap: merging one into a state only adds it to the state's lightest partition, which is much cheaper.
    """

    def __init__(self, costs: list[int], k: int, equal_size: bool) -> None:
        self.costs, self.k = costs, k
        self.order = sorted(range(len(costs)), key=costs.__getitem__, reverse=True)
        self.next_single = 0
        self.heap: list[tuple[int, int, list[int], list[_Node]]] = []
        self.tiebreak = 0
        if equal_size:  # seed k items at a time, one per partition, so counts stay equal in every merge
            for start in range(0, len(self.order), k):
                self._push([costs[i] for i in self.order[start : start + k]], list(self.order[start : start + k]))
            self.next_single = len(self.order)

    def _push(self, sums: list[int], nodes: list[_Node]) -> None:
        heapq.heappush(self.heap, (sums[-1] - sums[0], self.tiebreak, sums, nodes))
        self.tiebreak += 1

    def _take(self) -> int | tuple[int, int, list[int], list[_Node]] | None:
        """The item or state with the largest spread (a singleton wins ties), or None when none is left."""
        heap, order = self.heap, self.order
        if self.next_single < len(order) and (not heap or self.costs[order[self.next_single]] >= -heap[0][0]):
            self.next_single += 1
            return order[self.next_single - 1]
        return heapq.heappop(heap) if heap else None

    def _merge(self, a: Any, b: Any) -> None:
        k, costs = self.k, self.costs
        if isinstance(a, int) and isinstance(b, int):
            self._push([costs[a], costs[b], *[0] * (k - 2)], [a, b, *[None] * (k - 2)])
        elif isinstance(a, int) or isinstance(b, int):
            single, (_, _, sums, nodes) = (a, b) if isinstance(a, int) else (b, a)
            value, node = sums.pop() + costs[single], (nodes.pop(), single)
            at = bisect_left(sums, -value, key=neg)  # sums are descending
            sums.insert(at, value)
            nodes.insert(at, node)
            self._push(sums, nodes)
        else:
            # Pair a's heaviest partition with b's lightest and so on: the two spreads cancel out.
            (_, _, sa, na), (_, _, sb, nb) = a, b
            pairs = zip(map(add, sa, sb[::-1]), zip(na, nb[::-1], strict=True), strict=True)
            pairs = sorted(pairs, key=itemgetter(0), reverse=True)
            sums, nodes = zip(*pairs, strict=True)
            self._push(list(sums), list(nodes))

    def run(self) -> list[list[int]]:
        while True:
            a, b = self._take(), self._take()
            if b is None:
                break
            self._merge(a, b)
        if a is None:
            return [[] for _ in range(self.k)]
        if isinstance(a, int):
            return [[a]] + [[] for _ in range(self.k - 1)]
        return [_flatten(node) for node in a[3]]


def greedy_partition(costs: Sequence[int], num_partitions: int, *, equal_size: bool = False) -> list[list[int]]:
    """Longest-processing-time first: each item, heaviest first, goes to the lightest partition with room."""
    _check(len(costs), num_partitions, equal_size)
    capacity = len(costs) // num_partitions if equal_size else len(costs)
    heap = [(0, p) for p in range(num_partitions)]
    parts: list[list[int]] = [[] for _ in range(num_partitions)]
    for i in sorted(range(len(costs)), key=costs.__getitem__, reverse=True):
        total, p = heapq.heappop(heap)
        parts[p].append(i)
        if len(parts[p]) < capacity:
            heapq.heappush(heap, (total + costs[i], p))
    return [sorted(p) for p in parts]


def partition_spread(costs: Sequence[int], parts: Sequence[Sequence[int]]) -> int:
    """Max minus min of the partitions' cost sums."""
    sums = [sum(costs[i] for i in p) for p in parts]
    return max(sums) - min(sums)


def balance_partitions(
    lengths: Sequence[int],
    num_partitions: int,
    *,
    equal_size: bool = False,
    cost: Cost = "tokens",
    hidden_size: int = 4096,
) -> list[list[int]]:
    """Split item indices into `num_partitions` lists with near-equal total cost (Karmarkar-Karp).

    Args:
        lengths: token count per item (a sample, or a packed micro-batch's total).
        num_partitions: number of partitions (DP ranks, or micro-batches per rank).
        equal_size: give every partition exactly `len(lengths) / num_partitions` items.
        cost: balance `"tokens"`, or estimated forward `"flops"` (see `estimate_flops`, with `hidden_size`).

    Returns:
        `num_partitions` lists of indices, each ascending; partitions ordered by their first index, empty
        ones last (only possible when there are fewer items than partitions). Every index appears once.
    """
    _check(len(lengths), num_partitions, equal_size)
    costs = _costs(lengths, cost, hidden_size)
    if num_partitions == 1:
        return [list(range(len(costs)))]
    parts = _KarmarkarKarp(costs, num_partitions, equal_size).run()
    if costs:
        greedy = greedy_partition(costs, num_partitions, equal_size=equal_size)
        if partition_spread(costs, greedy) < partition_spread(costs, parts):
            parts = greedy
    return sorted(parts, key=lambda p: (not p, p[0] if p else 0))
