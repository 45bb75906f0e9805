"""RolloutDataSource: groups and counters, per-epoch shuffle, the partial-rollout buffer, and exact resume."""

from __future__ import annotations

import json
import sys
import types
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime.buffer import PromptDataset, RolloutDataSource, pop_first
from slime.types import ContractError, DataError, Sample, Status


def dataset(n: int) -> PromptDataset:
    return PromptDataset([Sample(prompt=f"p{i}", label=str(i), metadata={"row": i}) for i in range(n)])


def rows(groups: list[list[Sample]]) -> list[int]:
    return [g[0].metadata["row"] for g in groups]


def signature(groups: list[list[Sample]]) -> list[list[dict]]:
    return [[s.to_dict() for s in g] for g in groups]


def test_groups_are_deep_copies_with_running_counters():
    source = RolloutDataSource(dataset(3), n_samples_per_prompt=2)
    groups = source.get_samples(2)
    assert [[(s.group_index, s.index) for s in g] for g in groups] == [[(0, 0), (0, 1)], [(1, 2), (1, 3)]]
    groups[0][0].metadata["row"] = 99
    groups[0][0].tokens.append(5)
    assert groups[0][1].metadata["row"] == 0 and source.dataset[0].metadata["row"] == 0
    assert source.dataset[0].tokens == []


def test_unshuffled_epochs_wrap_in_file_order():
    source = RolloutDataSource(dataset(3))
    assert rows(source.get_samples(5)) == [0, 1, 2, 0, 1]
    assert source.epoch == 1 and source.cursor == 2
    assert [g[0].group_index for g in source.get_samples(2)] == [5, 6]


@given(n=st.integers(1, 40), seed=st.integers(0, 2**31), epochs=st.integers(1, 3))
def test_each_epoch_is_a_seeded_permutation(n, seed, epochs):
    source = RolloutDataSource(dataset(n), shuffle=True, seed=seed)
    served = rows(source.get_samples(n * epochs))
    for e in range(epochs):
        epoch_rows = served[e * n : (e + 1) * n]
        assert sorted(epoch_rows) == list(range(n))
        fresh = RolloutDataSource(dataset(n), shuffle=True, seed=seed + e)
        assert epoch_rows == source.epoch_order(e) == fresh.epoch_order(0)


@given(
    n=st.integers(1, 12),
    n_per=st.integers(1, 3),
    seed=st.integers(0, 1000),
    before=st.lists(st.integers(0, 7), max_size=5),
    after=st.lists(st.integers(0, 7), min_size=1, max_size=5),
    buffered=st.integers(0, 3),
)
def test_resume_from_saved_state_equals_an_uninterrupted_run(n, n_per, seed, before, after, buffered):
    def make():
        return RolloutDataSource(dataset(n), n_samples_per_prompt=n_per, shuffle=True, seed=seed)

    live = make()
    for k in before:
        live.get_samples(k)
    partial = live.get_samples(buffered)
    for group in partial:
        group[0].append_response([1, 2], [-0.5, -0.25], weight_version="3")
        group[0].status = Status.ABORTED
    live.add_samples(partial, rollout_id=7)

    state = json.loads(json.dumps(live.state_dict()))  # must survive JSON
    restored = make()
    restored.load_state_dict(state)
    for k in after:
        assert signature(restored.get_samples(k)) == signature(live.get_samples(k))
    assert restored.state_dict() == live.state_dict()


def test_save_and_load_files_atomically(tmp_path):
    source = RolloutDataSource(dataset(5), n_samples_per_prompt=2, shuffle=True, seed=3)
    source.get_samples(3)
    source.add_samples(source.get_samples(1), rollout_id=0)
    path = tmp_path / "ckpt" / "data_source.json"
    source.save(path)
    source.save(path)  # overwrite in place
    assert [p.name for p in path.parent.iterdir()] == ["data_source.json"], "no temp file left behind"
    other = RolloutDataSource(dataset(5), n_samples_per_prompt=2)
    other.load(path)
    assert other.seed == 3 and other.shuffle and len(other.buffer) == 1
    assert signature(other.get_samples(4)) == signature(source.get_samples(4))


def test_buffer_is_served_first_fifo_and_tagged_with_start_rollout():
    source = RolloutDataSource(dataset(10), n_samples_per_prompt=2)
    first, second, third = source.get_samples(3)
    source.add_samples([second, first], rollout_id=4)
    first[0].metadata["start_rollout_id"] = 4
    source.add_samples([third], rollout_id=6)
    assert [s.metadata["start_rollout_id"] for g in source.buffer for s in g] == [4, 4, 4, 4, 6, 6]
    served = source.get_samples(2)
    assert served == [second, first]
    served = source.get_samples(3)
    assert served[0] == third and rows(served[1:]) == [3, 4]
    assert source.buffer == []


def test_restarted_partial_sample_keeps_its_original_start_rollout():
    source = RolloutDataSource(dataset(2))
    groups = source.get_samples(1)
    source.add_samples(groups, rollout_id=1)
    again = source.get_samples(1)
    assert again == groups
    source.add_samples(again, rollout_id=2)
    assert again[0][0].metadata["start_rollout_id"] == 1


def test_pop_first_is_fifo_and_mutates_in_place():
    buffer = [[Sample(index=i)] for i in range(5)]
    assert [g[0].index for g in pop_first(None, None, buffer, 2)] == [0, 1]
    assert [g[0].index for g in buffer] == [2, 3, 4]
    assert [g[0].index for g in pop_first(None, 3, buffer, 10)] == [2, 3, 4]
    assert buffer == [] and pop_first(None, 0, buffer, 3) == []


def test_custom_buffer_filter_from_a_path(monkeypatch):
    module = types.ModuleType("user_buffer_filters")

    def newest_first(args, rollout_id, buffer, num_samples):
        taken = buffer[-num_samples:][::-1]
        del buffer[-num_samples:]
        return taken

    module.newest_first = newest_first
    monkeypatch.setitem(sys.modules, "user_buffer_filters", module)
    args = types.SimpleNamespace(prompt_data=None, buffer_filter_path="user_buffer_filters:newest_first")
    source = RolloutDataSource.from_args(args)
    source.add_samples([[Sample(index=i)] for i in range(3)])
    assert [g[0].index for g in source.get_samples(2)] == [2, 1]


def test_buffer_filter_that_breaks_the_contract_is_caught():
    def peek(args, rollout_id, buffer, num_samples):
        return buffer[:num_samples]  # forgets to remove them

    source = RolloutDataSource(dataset(3), buffer_filter=peek)
    source.add_samples(source.get_samples(1))
    with pytest.raises(ContractError, match="must remove the groups it returns"):
        source.get_samples(1)


def test_add_samples_checks_group_size():
    source = RolloutDataSource(dataset(3), n_samples_per_prompt=2)
    with pytest.raises(ContractError, match="list of 2 Samples"):
        source.add_samples([[Sample()]])


def test_from_args_reads_slime_flags(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"q": f"x{i}", "a": i}) + "\n" for i in range(4)))
    args = types.SimpleNamespace(
        prompt_data=str(path) + "@[1:]", input_key="q", label_key="a", n_samples_per_prompt=3,
        rollout_shuffle=True, rollout_seed=5,
    )  # fmt: skip
    source = RolloutDataSource.from_args(args)
    assert len(source) == 3 and source.n_samples_per_prompt == 3 and source.seed == 5
    assert Counter(s.label for g in source.get_samples(3) for s in g) == {1: 3, 2: 3, 3: 3}


def test_without_a_dataset_groups_of_empty_samples_are_served():
    source = RolloutDataSource(None, n_samples_per_prompt=2)
    groups = source.get_samples(2)
    assert [[(s.group_index, s.index, s.prompt) for s in g] for g in groups] == [
        [(0, 0, ""), (0, 1, "")],
        [(1, 2, ""), (1, 3, "")],
    ]
    assert len(source) == 0


def test_state_from_other_data_or_damaged_is_refused():
    state = RolloutDataSource(dataset(4)).state_dict()
    with pytest.raises(DataError, match="saved with 4 prompts but the data now has 5.*same --prompt-data"):
        RolloutDataSource(dataset(5)).load_state_dict(state)
    with pytest.raises(DataError, match="'cursor' is -1"):
        RolloutDataSource(dataset(4)).load_state_dict({**state, "cursor": -1})
    with pytest.raises(DataError, match="format"):
        RolloutDataSource(dataset(4)).load_state_dict({**state, "format": "torch"})
    grouped = RolloutDataSource(dataset(4), n_samples_per_prompt=2)
    grouped.add_samples(grouped.get_samples(1))
    with pytest.raises(DataError, match="same --n-samples-per-prompt"):
        RolloutDataSource(dataset(4)).load_state_dict(grouped.state_dict())


def test_unserialisable_buffer_content_is_named_on_save(tmp_path):
    source = RolloutDataSource(dataset(2))
    (group,) = source.get_samples(1)
    group[0].metadata["handle"] = object()
    source.add_samples([group])
    with pytest.raises(ContractError, match="JSON-serialisable"):
        source.save(tmp_path / "s.json")
    assert list(tmp_path.iterdir()) == []


def test_load_of_a_broken_file_names_it(tmp_path):
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(DataError, match=r"s\.json: cannot read the data source state.*Fix"):
        RolloutDataSource(dataset(2)).load(tmp_path / "s.json")
