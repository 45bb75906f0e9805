"""Bucket planning (hypothesis: every byte accounted once, limit held), flatten/unflatten, manifest parsing."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slime.sync import BucketManifest, TensorSpec, flatten_bucket, plan_buckets, unflatten_bucket
from slime.sync.buckets import ALIGNMENT, split_parts
from slime.sync.tensor_bytes import as_bytes
from slime.types import ConfigError, ContractError, WeightSyncError

DTYPES = ["bfloat16", "float32", "float16", "int64", "uint8", "float8_e4m3fn", "bool"]

spec_lists = st.lists(st.tuples(st.lists(st.integers(0, 40), max_size=3), st.sampled_from(DTYPES)), max_size=25).map(
    lambda items: [TensorSpec(f"w{i}", tuple(shape), dtype) for i, (shape, dtype) in enumerate(items)]
)


@settings(deadline=None)
@given(specs=spec_lists, bucket_bytes=st.integers(1, 4096))
def test_every_byte_accounted_once_and_limit_held(specs: list[TensorSpec], bucket_bytes: int) -> None:
    manifests = plan_buckets(specs, bucket_bytes)
    entries = [e for m in manifests for e in m.entries]
    assert sorted(e.name for e in entries) == sorted(s.name for s in specs)  # each tensor exactly once
    by_name = {s.name: s for s in specs}
    assert sum(e.nbytes for e in entries) == sum(s.nbytes for s in specs)
    for index, m in enumerate(manifests):
        assert m.index == index
        m.validate()  # in bounds, aligned, no overlap
        assert all(e.dtype == m.dtype and e.offset % ALIGNMENT == 0 for e in m.entries)
        assert all(
            (e.shape, e.dtype, e.nbytes) == (by_name[e.name].shape, by_name[e.name].dtype, by_name[e.name].nbytes)
            for e in m.entries
        )
        assert m.nbytes <= bucket_bytes or len(m.entries) == 1
        if m.entries:
            assert m.nbytes == max(e.offset + e.nbytes for e in m.entries)
        assert BucketManifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m


@settings(deadline=None)
@given(specs=spec_lists, bucket_bytes=st.integers(1, 4096), part_bytes=st.none() | st.integers(1, 8192))
def test_split_parts_keeps_order(specs: list[TensorSpec], bucket_bytes: int, part_bytes: int | None) -> None:
    manifests = plan_buckets(specs, bucket_bytes)
    parts = split_parts(manifests, part_bytes)
    assert [m for p in parts for m in p] == manifests and parts
    if part_bytes is not None:
        assert all(sum(m.nbytes for m in p) <= part_bytes or len(p) == 1 for p in parts)


def test_round_trip_bit_exact_views(weights: dict[str, torch.Tensor]) -> None:
    manifests = plan_buckets([TensorSpec.of(n, t) for n, t in weights.items()], 4096)
    assert any(m.nbytes > 4096 for m in manifests)  # the big tensor got its own bucket
    for m in manifests:
        buffer = flatten_bucket(m, weights)
        assert buffer.dtype == torch.uint8 and buffer.numel() == m.nbytes
        for name, view in unflatten_bucket(m, buffer):
            assert view.dtype == weights[name].dtype and view.shape == weights[name].shape
            assert torch.equal(as_bytes(view), as_bytes(weights[name]))
            if view.numel():
                assert view.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr()  # a view, no copy


def test_planner_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="bucket_bytes"):
        plan_buckets([], 0)
    with pytest.raises(ContractError, match="twice"):
        plan_buckets([TensorSpec("a", (1,), "float32")] * 2)


def test_flatten_checks_shapes_and_dtypes() -> None:
    (m,) = plan_buckets([TensorSpec("a", (2, 2), "float32")])
    with pytest.raises(WeightSyncError, match="manifest says"):
        flatten_bucket(m, {"a": torch.zeros(4)})
    with pytest.raises(WeightSyncError, match="manifest says"):
        flatten_bucket(m, [torch.zeros(2, 2, dtype=torch.bfloat16)])
    with pytest.raises(WeightSyncError, match="bytes"):
        unflatten_bucket(m, torch.zeros(15, dtype=torch.uint8))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("entries"),
        lambda d: d.update(dtype="complex64"),
        lambda d: d.update(dtype="__class__"),
        lambda d: d["entries"][1].update(offset=0),  # overlaps entry 0
        lambda d: d["entries"][1].update(offset=2),  # misaligned
        lambda d: d["entries"][0].update(nbytes=3),  # disagrees with shape
        lambda d: d.update(nbytes=10),  # entries leave the buffer
        lambda d: d["entries"][0].update(shape=[-1, 2]),
        lambda d: d["entries"][0].update(name=7),
        lambda d: d.update(index="0"),
        lambda d: d["entries"].append(dict(d["entries"][0])),  # duplicate name
    ],
)
def test_garbled_manifest_raises(mutate) -> None:
    (m,) = plan_buckets([TensorSpec("a", (2, 2), "float32"), TensorSpec("b", (3,), "float32")])
    data = json.loads(json.dumps(m.to_dict()))
    mutate(data)
    with pytest.raises(WeightSyncError):
        BucketManifest.from_dict(data)
