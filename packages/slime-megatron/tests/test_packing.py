"""Packed THD micro-batch layout: token row, padding sequence, response rows and targets."""

from __future__ import annotations

import pytest
import torch
from slime_megatron_testsupport.batches import random_batch

from slime.megatron.packing import PackedMicroBatch, local_micro_batches, plan_micro_batches
from slime.types import ConfigError

CPU = torch.device("cpu")


def test_layout_of_a_packed_micro_batch() -> None:
    batch = random_batch(5, seed=3)
    samples = batch.samples
    ids = [4, 0, 2]
    mb = PackedMicroBatch.build([samples[i] for i in ids], ids, pad_multiple=16, device=CPU)
    lengths = [samples[i].total_length for i in ids]
    real = sum(lengths)
    assert mb.num_tokens == real and mb.tokens.shape == (1, real + (-real) % 16)
    assert mb.cu_seqlens.tolist()[: len(ids) + 1] == [0, *torch.tensor(lengths).cumsum(0).tolist()]
    assert mb.cu_seqlens[-1] == mb.tokens.shape[1] and mb.max_seqlen == max(lengths + [(-real) % 16])
    row = mb.tokens[0].tolist()
    for k, i in enumerate(ids):
        s, start = samples[i], mb.cu_seqlens[k].item()
        assert row[start : start + s.total_length] == list(s.tokens)
        r0, r1 = mb.response_cu_seqlens[k].item(), mb.response_cu_seqlens[k + 1].item()
        assert r1 - r0 == s.response_length
        # the logit row that predicts response token j is the position just before it
        assert [row[p + 1] for p in mb.logit_index[r0:r1].tolist()] == list(s.tokens[s.prompt_length :])
        assert mb.target_ids[r0:r1].tolist() == list(s.tokens[s.prompt_length :])
        assert mb.loss_mask[r0:r1].tolist() == [float(x) for x in s.loss_mask]
    assert [t.numel() for t in mb.split_responses(mb.target_ids)] == [samples[i].response_length for i in ids]


def test_no_padding_sequence_when_aligned() -> None:
    s = random_batch(1, seed=0).samples[0]
    mb = PackedMicroBatch.build([s], [0], pad_multiple=1, device=CPU)
    assert mb.cu_seqlens.tolist() == [0, s.total_length]


def test_micro_batch_plans() -> None:
    assert plan_micro_batches([5, 5, 5, 5, 5], max_tokens_per_gpu=None, micro_batch_size=2) == [[0, 1], [2, 3], [4]]
    packed = plan_micro_batches([30, 20, 50, 10], max_tokens_per_gpu=60, micro_batch_size=None)
    assert sorted(i for b in packed for i in b) == [0, 1, 2, 3]
    assert all(sum([30, 20, 50, 10][i] for i in b) <= 60 for b in packed)
    with pytest.raises(ConfigError, match="--micro-batch-size"):
        plan_micro_batches([1], max_tokens_per_gpu=None, micro_batch_size=None)


def test_data_parallel_shards_cover_the_step_once() -> None:
    samples = random_batch(8, seed=5).samples
    ids = [1, 2, 3, 4, 5, 6]
    seen = []
    for rank in range(2):
        for mb in local_micro_batches(
            samples, ids, dp_rank=rank, dp_size=2, tokens_cap=None, micro_batch_size=2, pad_multiple=8, device=CPU
        ):
            seen.extend(mb.sample_ids)
    assert sorted(seen) == ids


def test_decreasing_first_fit_is_a_partition_within_the_cap_and_packs_tighter() -> None:
    lengths = [
        6,
        5,
        4,
        3,
        7,
        2,
    ]  # first fit in order: [6,4], [5,3,2], [7] -> 3; longest first: [7,3], [6,4], [5,2] -> 3
    cap = 10
    for decreasing in (False, True):
        plan = plan_micro_batches(lengths, max_tokens_per_gpu=cap, micro_batch_size=None, decreasing=decreasing)
        assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in b) <= cap for b in plan) and all(b == sorted(b) for b in plan)
    tight = [3, 3, 3, 7, 7, 7]  # in order: [3,3,3], [7], [7], [7] -> 4; longest first: [7,3] x 3 -> 3
    assert len(plan_micro_batches(tight, max_tokens_per_gpu=10, micro_batch_size=None)) == 4
    assert plan_micro_batches(tight, max_tokens_per_gpu=10, micro_batch_size=None, decreasing=True) == [
        [0, 3],
        [1, 4],
        [2, 5],
    ]


def test_micro_batches_are_built_when_read_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = random_batch(8, seed=3)
    built: list[tuple[int, ...]] = []
    build = PackedMicroBatch.build
    monkeypatch.setattr(
        PackedMicroBatch, "build", lambda samples, ids, **kw: built.append(tuple(ids)) or build(samples, ids, **kw)
    )
    kwargs = dict(dp_rank=0, dp_size=1, tokens_cap=None, micro_batch_size=3, pad_multiple=8, device=torch.device("cpu"))
    lazy = local_micro_batches(batch.samples, range(8), **kwargs)
    assert len(lazy) == 3 and built == []  # planned, nothing built yet
    first = next(iter(lazy))
    assert built == [(0, 1, 2)] and lazy[0] is first  # one at a time, in the order read, then kept
    assert [mb.sample_ids for mb in lazy[1:]] == [(3, 4, 5), (6, 7)] and len(built) == 3
    assert [mb.sample_ids for mb in lazy] == [(0, 1, 2), (3, 4, 5), (6, 7)] and len(built) == 3
