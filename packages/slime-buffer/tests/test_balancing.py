"""Karmarkar-Karp balancing: coverage, equal sizes, no worse than greedy, near-optimal against brute force."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime.buffer import balance_partitions, estimate_flops, greedy_partition, partition_spread
from slime.types import ConfigError


def brute_force_spread(costs: list[int], k: int, equal_size: bool) -> int:
    best = None
    for assign in itertools.product(range(k), repeat=len(costs)):
        if equal_size and any(assign.count(p) != len(costs) // k for p in range(k)):
            continue
        sums = [0] * k
        for i, p in enumerate(assign):
            sums[p] += costs[i]
        spread = max(sums) - min(sums)
        best = spread if best is None else min(best, spread)
    return best


@st.composite
def problems(draw, max_items=40, max_k=8):
    k = draw(st.integers(1, max_k))
    equal = draw(st.booleans())
    n = draw(st.integers(0, max_items))
    if equal:
        n -= n % k
    return draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n)), k, equal


@given(problem=problems())
def test_every_item_once_and_equal_sizes(problem):
    costs, k, equal = problem
    parts = balance_partitions(costs, k, equal_size=equal)
    assert len(parts) == k
    assert sorted(i for p in parts for i in p) == list(range(len(costs)))
    assert all(p == sorted(p) for p in parts)
    if equal:
        assert {len(p) for p in parts} == {len(costs) // k}


@given(problem=problems())
def test_never_worse_than_greedy(problem):
    costs, k, equal = problem
    kk = balance_partitions(costs, k, equal_size=equal)
    assert partition_spread(costs, kk) <= partition_spread(costs, greedy_partition(costs, k, equal_size=equal))


@given(problem=problems(max_items=8, max_k=3))
def test_within_the_largest_item_of_optimal(problem):
    costs, k, equal = problem
    if not costs:
        return
    spread = partition_spread(costs, balance_partitions(costs, k, equal_size=equal))
    assert spread <= brute_force_spread(costs, k, equal) + max(costs)


def test_known_instance_where_differencing_beats_greedy():
    costs = [8, 7, 6, 5, 4]
    assert partition_spread(costs, balance_partitions(costs, 2)) == 2, "8-7, 6-5, 4-1, 3-1: 14 vs 16"
    assert partition_spread(costs, greedy_partition(costs, 2)) == 4, "greedy gets 13 vs 17"


def test_flops_cost_weighs_long_sequences_quadratically():
    assert estimate_flops(2000, hidden_size=64) > 2 * estimate_flops(1000, hidden_size=64)
    lengths = [4000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000]
    by_tokens = balance_partitions(lengths, 2, cost="tokens")
    by_flops = balance_partitions(lengths, 2, cost="flops", hidden_size=64)
    assert sorted(len(p) for p in by_tokens) == [3, 6], "4000 + 2 x 1000 against 6 x 1000 tokens"
    assert sorted(len(p) for p in by_flops) == [1, 8], "the long sequence's attention outweighs eight short ones"


def test_fewer_items_than_partitions_leaves_empty_partitions_last():
    assert balance_partitions([5, 3], 4) == [[0], [1], [], []]
    assert balance_partitions([], 2) == [[], []]


@pytest.mark.parametrize(
    ("lengths", "k", "kwargs", "pattern"),
    [
        ([1, 2, 3], 2, {"equal_size": True}, "multiple of num_partitions"),
        ([1], 0, {}, "num_partitions is 0"),
        ([1], 1, {"cost": "bytes"}, "'tokens' or 'flops'"),
    ],
)
def test_bad_arguments(lengths, k, kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        balance_partitions(lengths, k, **kwargs)
