"""Colocated transport on CPU: shared-memory handles opened by another process, versions, bad payloads."""

from __future__ import annotations

import json

import pytest
import torch

from slime.sync import SharedMemoryReceiver, SharedMemorySender
from slime.types import WeightSyncError


def test_round_trip_across_processes(engines, weight_factory, expect) -> None:
    engine = engines[0]
    engine.new("shm", verify_checksums=True)
    sender = SharedMemorySender(engine.deliver("shm"), bucket_bytes=4096, checksums=True)
    first = weight_factory(0)
    stats = sender.publish(first.items(), 1)
    assert stats["num_buckets"] >= 3 and stats["bytes"] > 0
    assert engine.weights("shm") == expect(first)

    second = weight_factory(1)
    split = SharedMemorySender(engine.deliver("shm"), bucket_bytes=4096, max_payload_bytes=4096, checksums=True)
    assert split.publish(second.items(), 2)["num_parts"] > 1
    assert engine.weights("shm") == expect(second)


def test_versions_and_bad_payloads_keep_weights(engines, weight_factory, expect) -> None:
    engine = engines[0]
    engine.new("shm")
    payloads: list[dict] = []
    sender = SharedMemorySender(payloads.append, bucket_bytes=4096)
    weights = weight_factory(2)
    sender.publish(weights.items(), 5)  # captured, not yet delivered; its buffers are gone after publish
    keep = SharedMemorySender(engine.deliver("shm"), bucket_bytes=4096)
    keep.publish(weights.items(), 5)
    assert engine.call(op="apply", transport="shm", payload=payloads[0], peer="::1") == {
        "ok": True,
        "version": 5,
        "held": 5,
    }  # same version: a no-op that reports it

    older = json.loads(json.dumps(payloads[0]))
    older["version"] = 4
    reply = engine.call(op="apply", transport="shm", payload=older, peer="127.0.0.1")
    assert not reply["ok"] and "already holds 5" in reply["error"] and reply["held"] == 5

    newer = json.loads(json.dumps(payloads[0]))
    newer["version"] = 6
    garbles = [
        lambda p: p["buckets"][0]["handle"].update(name="L2V0Yy9wYXNzd2Q="),  # /etc/passwd
        lambda p: p["buckets"][0]["handle"].update(nbytes=1),
        lambda p: p["buckets"][0]["manifest"]["entries"][0].update(offset=999999),
        lambda p: p["buckets"].pop(),  # truncated: still well-formed, caught by `num_buckets`
        lambda p: p.pop("buckets"),
        lambda p: p.update(format="other/9"),
    ]
    for garble in garbles:
        payload = json.loads(json.dumps(newer))
        garble(payload)
        reply = engine.call(op="apply", transport="shm", payload=payload, peer="127.0.0.1")
        assert not reply["ok"] and reply["held"] == 5, reply
    reply = engine.call(op="apply", transport="shm", payload=newer, peer="192.0.2.1")
    assert not reply["ok"] and "refusing" in reply["error"]
    assert engine.weights("shm") == expect(weights)


def test_receiver_maps_shared_memory_without_copy(weights) -> None:
    seen: list[bool] = []
    receiver = SharedMemoryReceiver(lambda items: seen.extend(t.is_shared() for _, t in items if t.numel()))
    sender = SharedMemorySender(lambda p: receiver.apply(json.loads(json.dumps(p))), bucket_bytes=4096)
    sender.publish(weights.items(), 0)
    assert seen and all(seen) and receiver.version == 0
    with pytest.raises(WeightSyncError, match="not newer"):
        sender.publish(weights.items(), 0)


def test_loader_failure_keeps_version(weights) -> None:
    def broken(items: list[tuple[str, torch.Tensor]]) -> None:
        raise RuntimeError("out of memory")

    receiver = SharedMemoryReceiver(broken)
    sender = SharedMemorySender(receiver.apply)
    with pytest.raises(WeightSyncError, match="load_weights failed"):
        sender.publish(weights.items(), 3)
    assert receiver.version == -1


def test_cuda_handle_fields_round_trip_through_json_without_pickle() -> None:
    from slime.sync.ipc import _CUDA_PARAMS, _decode, _encode, open_buffer

    values = (torch.Tensor, torch.Size([8]), (1,), 0, torch.storage.TypedStorage, torch.uint8, 0, b"\x00\xff",
              8, 0, False, b"ref", 0, None, True)  # fmt: skip
    encoded = json.loads(json.dumps({n: _encode(v) for n, v in zip(_CUDA_PARAMS, values, strict=True)}))
    decoded = {n: _decode(v) for n, v in encoded.items()}
    assert tuple(decoded.values()) == tuple(tuple(v) if isinstance(v, torch.Size) else v for v in values)
    for forged in ({"class": "os.system"}, {"dtype": "__class__"}, {"bytes": 5}, {"eval": "1"}, [1, 2]):
        with pytest.raises(WeightSyncError):
            _decode(forged)
    with pytest.raises(WeightSyncError, match="do not match"):
        open_buffer({"kind": "cuda_ipc", "fields": {"tensor_cls": {"class": "torch.Tensor"}}}, 8)
    with pytest.raises(WeightSyncError, match="unknown memory handle"):
        open_buffer({"kind": "pickle"}, 8)


def test_cpu_buffers_are_reused_unless_a_delivery_failed(weights) -> None:
    seen: list[list[str]] = []
    receiver = SharedMemoryReceiver(lambda items: None)

    def deliver(payload: dict) -> int:
        seen.append([b["handle"]["name"] for b in payload["buckets"]])
        return receiver.apply(json.loads(json.dumps(payload)))

    sender = SharedMemorySender(deliver, bucket_bytes=4096)
    sender.publish(weights.items(), 1)
    sender.publish(weights.items(), 2)
    assert seen[0] == seen[1]  # same shared memory, refilled; the receiver keeps it mapped
    failing = SharedMemorySender(lambda p: seen.append([b["handle"]["name"] for b in p["buckets"]]) or 1 / 0)
    for version in (1, 2):
        with pytest.raises(ZeroDivisionError):
            failing.publish(weights.items(), version)
    assert not set(seen[2]) & set(seen[3])  # after a failed delivery the buffers are fresh
