"""Disk transport: atomic publish, cross-process round trip, a sender killed mid-publish, bad folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slime.sync import DiskReceiver, DiskSender, latest_disk_payload
from slime.types import WeightSyncError

HERE = Path(__file__).resolve().parent


def test_round_trip_across_processes(engines, weight_factory, expect, tmp_path) -> None:
    engine = engines[0]
    engine.new("disk", root=str(tmp_path), verify_checksums=True)
    sender = DiskSender(engine.deliver("disk"), tmp_path, bucket_bytes=4096, checksums=True)
    for version in (1, 2):
        weights = weight_factory(version)
        sender.publish(weights.items(), version)
        assert engine.weights("disk") == expect(weights)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weight_v000002"]  # keep_versions=1 pruned v1
    index = json.loads((tmp_path / "weight_v000002" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(weights) and index["metadata"]["weight_version"] == 2
    assert latest_disk_payload(tmp_path)["version"] == 2


def test_killed_sender_leaves_receiver_on_old_version(engines, tmp_path) -> None:
    engine = engines[0]
    engine.new("disk", root=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "sender_worker.py"), "disk", str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    try:
        lines = (json.loads(line[3:]) for line in proc.stdout if line.startswith("@@ "))
        first = next(lines)
        assert engine.call(op="apply", transport="disk", payload=first, peer="127.0.0.1")["version"] == 1
        assert next(lines) == "stalled"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-weight_v000002")]
    assert hidden and any(hidden[0].glob("*.safetensors"))  # it died mid-write
    assert not (tmp_path / "weight_v000002").exists()
    assert latest_disk_payload(tmp_path)["version"] == 1
    forged = {**first, "version": 2, "path": str(hidden[0])}
    reply = engine.call(op="apply", transport="disk", payload=forged, peer="127.0.0.1")
    assert not reply["ok"] and reply["held"] == 1
    assert {w[1][0] for w in engine.weights("disk").values()} == {64}


def test_bad_folders_keep_weights(weights, tmp_path) -> None:
    loaded: dict[str, torch.Tensor] = {}
    receiver = DiskReceiver(lambda items: loaded.update(items), root=tmp_path / "pub")
    sender = DiskSender(receiver.apply, tmp_path / "pub", bucket_bytes=4096, keep_versions=3)
    sender.publish(weights.items(), 1)
    good = latest_disk_payload(tmp_path / "pub")
    folder = Path(good["path"])
    bad_folder = tmp_path / "pub" / "weight_v000009"
    shutil.copytree(folder, bad_folder)
    shard = sorted(bad_folder.glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:-7])  # truncated file
    outside = tmp_path / "elsewhere"
    shutil.copytree(folder, outside)
    cases = [
        {**good, "version": 9, "path": str(bad_folder)},
        {**good, "version": 3},  # the folder holds version 1
        {**good, "version": 9, "path": str(outside)},
        {**good, "version": 9, "path": None},
    ]
    for payload in cases:
        with pytest.raises(WeightSyncError):
            receiver.apply(payload)
    assert receiver.version == 1
    assert all(torch.equal(loaded[n], t) for n, t in weights.items())
    with pytest.raises(WeightSyncError, match="already exists"):
        DiskSender(receiver.apply, tmp_path / "pub").publish(weights.items(), 1)
