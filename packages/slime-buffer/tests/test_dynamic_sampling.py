"""DynamicSamplingPlanner driven by a simulated rollout loop: exact target, no group ever lost, metrics."""

from __future__ import annotations

import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime.buffer import DynamicFilterOutput, DynamicSamplingPlanner, GroupOutcome, RolloutDataSource
from slime.buffer.filters import check_reward_nonzero_std
from slime.types import ConfigError, ContractError, Sample, Status


def drive(planner, source, draw_finish, draw_verdict):
    """The loop slime.train runs, minus the engine: submit, finish in arbitrary order, abort the rest."""
    while not planner.done:
        for group in source.get_samples(planner.num_to_submit()):
            planner.submit(group)
        in_flight = planner.in_flight()
        assert in_flight, "the planner must keep work in flight until done"
        for ticket in draw_finish(sorted(in_flight)):
            finished = in_flight[ticket]
            finished[0].metadata["verdict"] = draw_verdict()
            for s in finished:
                s.status = Status.COMPLETED
            planner.record(ticket, finished)
    for ticket in planner.to_abort():
        partial = planner.in_flight()[ticket]
        for s in partial:
            s.status = Status.ABORTED
        planner.record_aborted(ticket, partial)


VERDICTS = [True, False, DynamicFilterOutput(keep=False, reason="flat", keep_when_insufficient=True)]


@given(
    target=st.integers(1, 6),
    extra=st.integers(0, 6),
    n=st.integers(1, 3),
    verdicts=st.lists(st.sampled_from(VERDICTS), min_size=1, max_size=3),
    data=st.data(),
)
def test_planner_returns_exactly_the_target_and_loses_nothing(target, extra, n, verdicts, data):
    source = RolloutDataSource(None, n_samples_per_prompt=n)
    planner = DynamicSamplingPlanner(
        target_groups=target,
        over_sampling_batch_size=target + extra,
        filter_fn=lambda args, group: group[0].metadata["verdict"],
    )
    rounds = [0]

    def draw_finish(tickets):
        rounds[0] += 1
        return data.draw(st.lists(st.sampled_from(tickets), min_size=1, max_size=len(tickets), unique=True))

    def draw_verdict():
        # After a while every group passes, so that a strict filter still lets the loop end.
        return True if rounds[0] > 40 else data.draw(st.sampled_from(verdicts))

    drive(planner, source, draw_finish, draw_verdict)

    result = planner.result()
    assert len(result) == target
    assert [g[0].index for g in result] == sorted(g[0].index for g in result)
    everything = result + planner.dropped() + planner.leftovers()
    submitted = source.group_index
    assert sorted(g[0].group_index for g in everything) == list(range(submitted)), "each group exactly once"
    m = planner.metrics()
    prefix = "rollout/dynamic_filter/"
    assert m[prefix + "submitted"] == submitted
    assert m[prefix + "kept"] + m[prefix + "dropped"] + m[prefix + "surplus"] + m[prefix + "aborted"] == submitted
    assert m[prefix + "in_flight"] == 0
    assert sum(v for k, v in m.items() if k.startswith(prefix + "drop_")) == m[prefix + "dropped"]


def test_reward_std_filter_in_the_planner():
    args = types.SimpleNamespace(reward_key=None)
    planner = DynamicSamplingPlanner(
        target_groups=1, over_sampling_batch_size=2, filter_fn=check_reward_nonzero_std, args=args
    )
    flat, mixed = planner.submit_many([[Sample(index=0), Sample(index=1)], [Sample(index=2), Sample(index=3)]])
    assert planner.record(flat, [Sample(index=0, reward=1.0), Sample(index=1, reward=1.0)]) is GroupOutcome.DROPPED
    assert planner.record(mixed, [Sample(index=2, reward=0.0), Sample(index=3, reward=1.0)]) is GroupOutcome.KEPT
    assert planner.metrics()["rollout/dynamic_filter/drop_check_reward_nonzero_std"] == 1.0


def test_resample_when_pending_can_no_longer_reach_the_target():
    planner = DynamicSamplingPlanner(target_groups=2, over_sampling_batch_size=3, filter_fn=lambda a, g: g[0].label)
    assert planner.num_to_submit() == 3
    tickets = planner.submit_many([[Sample(index=i, label=i != 0)] for i in range(3)])
    assert planner.num_to_submit() == 0, "3 pending can still reach 2"
    assert planner.record(tickets[0], [Sample(index=0, label=False)]) is GroupOutcome.DROPPED
    assert planner.num_to_submit() == 0, "2 pending can still reach 2"
    assert planner.record(tickets[1], [Sample(index=1, label=True)]) is GroupOutcome.KEPT
    assert planner.num_to_submit() == 0
    planner_drop = DynamicSamplingPlanner(target_groups=2, over_sampling_batch_size=2, filter_fn=lambda a, g: False)
    t = planner_drop.submit_many([[Sample(index=0)], [Sample(index=1)]])
    planner_drop.record(t[0], [Sample(index=0)])
    assert planner_drop.num_to_submit() == 2, "1 pending can no longer reach 2: pull another batch"
    assert planner_drop.metrics()["rollout/dynamic_filter/drop_<lambda>"] == 1.0


def test_keep_when_insufficient_keeps_only_when_needed():
    def fallback(args, group):
        return DynamicFilterOutput(keep=False, reason="flat", keep_when_insufficient=True)

    planner = DynamicSamplingPlanner(target_groups=1, over_sampling_batch_size=2, filter_fn=fallback)
    a, b = planner.submit_many([[Sample(index=0)], [Sample(index=1)]])
    assert planner.record(a, [Sample(index=0)]) is GroupOutcome.DROPPED, "b may still pass"
    assert planner.record(b, [Sample(index=1)]) is GroupOutcome.KEPT, "nothing else pending"
    m = planner.metrics()
    assert m["rollout/dynamic_filter/drop_flat"] == 1.0 and m["rollout/dynamic_filter/kept_when_insufficient"] == 1.0


def test_surplus_and_aborted_groups_go_to_leftovers_and_to_the_buffer():
    source = RolloutDataSource(None, n_samples_per_prompt=1)
    planner = DynamicSamplingPlanner(target_groups=1, over_sampling_batch_size=3)
    tickets = planner.submit_many(source.get_samples(planner.num_to_submit()))
    groups = planner.in_flight()
    assert planner.to_abort() == []
    assert planner.record(tickets[1], groups[tickets[1]]) is GroupOutcome.KEPT
    assert planner.done and planner.num_to_submit() == 0
    assert planner.to_abort() == [tickets[0], tickets[2]]
    assert planner.record(tickets[0], groups[tickets[0]]) is GroupOutcome.SURPLUS, "finished during the abort"
    planner.record_aborted(tickets[2], groups[tickets[2]])
    source.add_samples(planner.leftovers(), rollout_id=5)
    assert [g[0].index for g in source.buffer] == [0, 2]
    assert all(g[0].metadata["start_rollout_id"] == 5 for g in source.buffer)
    assert [g[0].index for g in planner.result()] == [1]


def test_misuse_is_reported():
    planner = DynamicSamplingPlanner(target_groups=2)
    with pytest.raises(ContractError, match="result\\(\\) before done: 0 of 2"):
        planner.result()
    with pytest.raises(ContractError, match="no such group in flight"):
        planner.record(7, [Sample()])
    with pytest.raises(ContractError, match="empty group"):
        planner.submit([])
    bad = DynamicSamplingPlanner(target_groups=1, filter_fn=lambda a, g: "yes")
    with pytest.raises(ContractError, match="must return a bool or a slime.buffer.DynamicFilterOutput"):
        bad.record(bad.submit([Sample()]), [Sample()])


@pytest.mark.parametrize(("target", "over"), [(0, None), (4, 3), (True, None), (2, 1.5)])
def test_config_errors_name_the_flags(target, over):
    with pytest.raises(ConfigError, match="--rollout-batch-size|--over-sampling-batch-size"):
        DynamicSamplingPlanner(target_groups=target, over_sampling_batch_size=over)
