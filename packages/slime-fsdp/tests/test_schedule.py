"""The data schedule: steps, rank partitions and micro-batches cover every sample once, every rank runs
the same number of micro-batches, and the token budget holds whenever first-fit could meet it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime.fsdp import BatchingPlan, plan_step, split_steps
from slime.types import ConfigError


def test_split_steps():
    assert split_steps(8, global_batch_size=None, num_steps_per_rollout=None) == [list(range(8))]
    assert split_steps(8, global_batch_size=None, num_steps_per_rollout=2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert split_steps(7, global_batch_size=3, num_steps_per_rollout=None) == [[0, 1, 2], [3, 4, 5]]  # 6 dropped
    assert split_steps(7, global_batch_size=None, num_steps_per_rollout=3) == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ConfigError, match="num_steps_per_rollout"):
        split_steps(2, global_batch_size=None, num_steps_per_rollout=3)
    with pytest.raises(ConfigError, match="global_batch_size"):
        split_steps(2, global_batch_size=3, num_steps_per_rollout=None)


@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=24),
    world_size=st.integers(1, 4),
    budget=st.one_of(st.none(), st.integers(1, 80)),
    micro_batch_size=st.integers(1, 5),
)
def test_plan_covers_each_sample_once(lengths, world_size, budget, micro_batch_size):
    plan = BatchingPlan(world_size=world_size, micro_batch_size=micro_batch_size, max_tokens_per_gpu=budget)
    indices = list(range(len(lengths)))
    ranks = plan_step(indices, lengths, plan)
    assert len(ranks) == world_size
    assert len({len(r) for r in ranks}) == 1 and len(ranks[0]) >= 1  # same count everywhere
    flat = [i for r in ranks for mb in r for i in mb]
    assert sorted(flat) == indices
    for rank in ranks:
        for mb in rank:
            assert mb == sorted(mb)
            if budget is None:
                assert len(mb) <= micro_batch_size


def test_dynamic_plan_respects_budget_and_balances():
    lengths = [10, 10, 10, 10, 5, 5, 5, 5]
    ranks = plan_step(range(8), lengths, BatchingPlan(world_size=2, max_tokens_per_gpu=15))
    assert [sum(lengths[i] for mb in r for i in mb) for r in ranks] == [30, 30]
    assert all(sum(lengths[i] for i in mb) <= 15 for r in ranks for mb in r)


def test_fewer_samples_than_ranks_gives_empty_micro_batches():
    ranks = plan_step([0], [7], BatchingPlan(world_size=2))
    assert ranks == [[[0]], [[]]]
