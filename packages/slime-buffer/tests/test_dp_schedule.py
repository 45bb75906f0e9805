"""Step schedule: pack, align the micro-batch count to DP, and give every rank the same number of micro-batches."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime.buffer import align_micro_batch_count, distribute_micro_batches, plan_dp_micro_batches
from slime.types import ContractError


@given(
    lengths=st.lists(st.integers(1, 300), min_size=8, max_size=120),
    dp=st.integers(1, 8),
    budget=st.integers(50, 600),
    balance=st.booleans(),
    cost=st.sampled_from(["tokens", "flops"]),
)
def test_every_rank_gets_the_same_count_and_every_sample_once(lengths, dp, budget, balance, cost):
    lengths = lengths[: len(lengths) - len(lengths) % dp]  # a step's sample count divides by dp (BatchConfig)
    plan = plan_dp_micro_batches(lengths, dp_size=dp, max_tokens_per_gpu=budget, balance=balance, cost=cost)
    assert len(plan) == dp and len({len(rank) for rank in plan}) == 1
    assert sorted(i for rank in plan for mb in rank for i in mb) == list(range(len(lengths)))
    for rank in plan:
        for mb in rank:
            assert mb and (sum(lengths[i] for i in mb) <= budget or len(mb) == 1)


def test_alignment_splits_the_heaviest_micro_batch():
    lengths = [5, 5, 1, 1, 8]
    assert align_micro_batch_count([[0, 1], [2, 3], [4]], lengths, 2) == [[0], [1], [2, 3], [4]]
    with pytest.raises(ContractError, match="too few samples to split"):
        align_micro_batch_count([[0], [1], [2]], [1, 1, 1], 2)


def test_balanced_distribution_beats_round_robin_here():
    lengths = [9, 9, 1, 1]
    plan = [[0], [1], [2], [3]]
    strided = distribute_micro_batches(plan, lengths, 2, balance=False)
    assert strided == [[[0], [2]], [[1], [3]]]
    balanced = distribute_micro_batches(plan, lengths, 2)
    assert sorted(sum(lengths[i] for mb in rank for i in mb) for rank in balanced) == [10, 10]


def test_halves_are_split_again_in_place():
    assert align_micro_batch_count([[0, 1, 2, 3], [4]], [1, 1, 1, 1, 9], 5) == [[0], [2], [1], [3], [4]]


@given(
    plan_sizes=st.lists(st.integers(1, 6), min_size=1, max_size=20),
    data=st.data(),
)
def test_alignment_keeps_every_sample_and_reaches_the_multiple(plan_sizes, data):
    multiple = data.draw(st.sampled_from([d for d in range(1, 9) if sum(plan_sizes) % d == 0]))
    lengths = data.draw(st.lists(st.integers(0, 50), min_size=sum(plan_sizes), max_size=sum(plan_sizes)))
    indices = iter(range(len(lengths)))
    plan = [[next(indices) for _ in range(size)] for size in plan_sizes]
    aligned = align_micro_batch_count(plan, lengths, multiple)
    assert len(aligned) % multiple == 0 and len(aligned) - len(plan) < multiple
    assert sorted(i for mb in aligned for i in mb) == list(range(len(lengths)))
    assert all(mb for mb in aligned)
