"""Broadcast transport over gloo between this process (rank 0) and two engine processes (ranks 1, 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slime.sync import BroadcastReceiver, BroadcastSender
from slime.types import WeightSyncError

HERE = Path(__file__).resolve().parent


def _fan_out(engines):
    """An engine client: post to every engine rank at once, then collect their answers."""

    def deliver(payload: dict) -> list[int]:
        for engine in engines:
            engine.send(op="apply", transport="broadcast", payload=json.loads(json.dumps(payload)), peer="127.0.0.1")
        replies = [engine.recv() for engine in engines]
        errors = [r["error"] for r in replies if not r["ok"]]
        if errors:
            raise WeightSyncError("; ".join(errors))
        return [r["version"] for r in replies]

    return deliver


def test_round_trip_versions_and_split(engines, weight_factory, expect) -> None:
    pair = engines.start(2)
    for rank, engine in enumerate(pair, start=1):
        engine.new("broadcast", rank=rank, verify_checksums=True)
    sender = BroadcastSender(_fan_out(pair), world_size=3, bucket_bytes=4096, checksums=True, timeout_s=60)
    for version in (1, 2):
        weights = weight_factory(version)
        stats = sender.publish(weights.items(), version)
        assert stats["num_buckets"] >= 3
        assert [e.weights("broadcast") for e in pair] == [expect(weights)] * 2
    sender.close()

    stale = BroadcastSender(_fan_out(pair), world_size=3, bucket_bytes=4096, timeout_s=60)  # a new group
    with pytest.raises(WeightSyncError, match="already holds 2"):
        stale.publish(weight_factory(9).items(), 1)  # receivers drain the buckets, refuse, keep version 2
    assert stale.publish(weight_factory(9).items(), 2)["bytes"] > 0  # same version: a no-op on the engines
    assert [e.weights("broadcast") for e in pair] == [expect(weights)] * 2
    split = BroadcastSender(
        _fan_out(pair), world_size=3, bucket_bytes=4096, max_payload_bytes=4096, checksums=True, timeout_s=60
    )
    weights = weight_factory(3)
    assert split.publish(weights.items(), 3)["num_parts"] > 1
    assert [e.weights("broadcast") for e in pair] == [expect(weights)] * 2
    split.close()
    stale.close()


def test_killed_sender_mid_broadcast_leaves_old_version(engines) -> None:
    pair = engines.start(2)
    for rank, engine in enumerate(pair, start=1):
        engine.new("broadcast", rank=rank)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "sender_worker.py"), "broadcast", "3"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    ops = []
    try:
        for line in proc.stdout:
            if not line.startswith("@@ "):
                continue
            payload = json.loads(line[3:])
            if payload == "stalled":
                break
            ops.append((payload["op"], payload["version"]))
            for engine in pair:  # relay without waiting: the engines block in the collective
                engine.send(op="apply", transport="broadcast", payload=payload, peer="127.0.0.1")
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert ops == [("init", 0), ("update", 1), ("update", 2)]
    for engine in pair:
        init, first, second = engine.recv(), engine.recv(), engine.recv()
        assert init["ok"] and first == {"ok": True, "version": 1, "held": 1}
        assert not second["ok"] and "broadcast failed" in second["error"] and second["held"] == 1, second
        assert {w[1][0] for w in engine.weights("broadcast").values()} == {64}


def test_receiver_rules_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other tests of this pytest worker may have initialised the default group (in-process trainers), so "never
    # touched" is checked by making any attempt to create a group fail loudly.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the broadcast endpoints must not create process groups before init")

    monkeypatch.setattr(torch.distributed, "init_process_group", refuse)
    monkeypatch.setattr(torch.distributed, "new_group", refuse)
    receiver = BroadcastReceiver(lambda items: None, rank=1)
    header = {"format": "slime.sync/1", "transport": "broadcast", "version": 1}
    with pytest.raises(WeightSyncError, match="before init"):
        receiver.apply({**header, "op": "update", "buckets": []})
    with pytest.raises(WeightSyncError, match="unknown broadcast op"):
        receiver.apply({**header, "op": "explode"})
    with pytest.raises(WeightSyncError, match="lacks"):
        receiver.apply({**header, "op": "init"})
    assert receiver.version == -1 and not receiver.connected
    with pytest.raises(ValueError, match="rank 0 is the trainer"):
        BroadcastReceiver(lambda items: None, rank=0)
    with pytest.raises(ValueError, match="world_size"):
        BroadcastSender(lambda p: None, world_size=1)


def test_sglang_layouts_are_refused_by_our_receiver_and_checked_by_the_sender() -> None:
    receiver = BroadcastReceiver(lambda items: None, rank=1)
    header = {"format": "slime.sync/1", "transport": "broadcast", "version": 1, "op": "update"}
    with pytest.raises(WeightSyncError, match="layout='buckets'"):
        receiver.apply({**header, "buckets": [], "num_buckets": 0, "layout": "tensors"})
    with pytest.raises(ValueError, match="layout='flat'"):
        BroadcastSender(lambda p: None, world_size=2, layout="flat")


def test_the_sender_stops_waiting_when_the_engines_refuse() -> None:
    """The sender waits for its own broadcasts and the engines' answer together. An engine that failed mid-update
    (SGLang answers HTTP 400) leaves an NCCL broadcast that never completes; the wait must end with the engine's
    error, not block until the group's timeout."""
    import threading

    from slime.sync.broadcast import _Delivery

    def refuse(payload):
        raise RuntimeError("HTTP 400: Failed to update parameter online")

    never = _Delivery(refuse, {"op": "update"})
    with pytest.raises(WeightSyncError, match=r"broadcast failed: the engines refused the update \(HTTP 400: Failed"):
        never.wait_alongside(lambda: False, timeout_s=120)  # "not done within" would mean it ignored the answer

    polls = iter([False, False, True])
    fine = _Delivery(lambda payload: "ok", {"op": "update"})
    fine.wait_alongside(lambda: next(polls), timeout_s=120)
    fine.finish(5)

    hold = threading.Event()
    silent = _Delivery(lambda payload: hold.wait(), {"op": "update"})
    with pytest.raises(WeightSyncError, match="broadcast failed: not done within 0.05 s"):
        silent.wait_alongside(lambda: False, timeout_s=0.05)
    hold.set()
