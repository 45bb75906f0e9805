"""The version rules every receiver shares, checked on a minimal in-process receiver."""

from __future__ import annotations

import pytest
import torch

from slime.sync import FORMAT, PayloadHeader, VersionedReceiver
from slime.types import WeightSyncError


class Echo(VersionedReceiver):
    """Stages one scalar tensor whose value is the payload's `value`."""

    transport = "echo"

    def _stage(self, header, payload):
        return [(f"part{header.part}", torch.tensor(float(payload["value"])))]


def payload(version: int, part: int = 0, num_parts: int = 1, value: float = 1.0) -> dict:
    return {**PayloadHeader("echo", version, part, num_parts).to_dict(), "value": value}


def make() -> tuple[Echo, list[dict[str, float]]]:
    loads: list[dict[str, float]] = []
    return Echo(lambda items: loads.append({n: float(t) for n, t in items})), loads


def test_versions_older_same_newer() -> None:
    receiver, loads = make()
    assert receiver.version == -1
    assert receiver.apply(payload(3)) == 3
    assert receiver.apply(payload(3, value=9.0)) == 3  # same version: reported, not loaded again
    with pytest.raises(WeightSyncError, match="already holds 3"):
        receiver.apply(payload(2))
    assert receiver.apply(payload(7, value=2.0)) == 7
    assert loads == [{"part0": 1.0}, {"part0": 2.0}]


def test_split_publish_commits_after_last_part_and_restarts_at_part_zero() -> None:
    receiver, loads = make()
    assert receiver.apply(payload(1, 0, 3)) == -1 and receiver.pending_version == 1
    with pytest.raises(WeightSyncError, match="expected part 1"):
        receiver.apply(payload(1, 2, 3))
    assert receiver.apply(payload(1, 1, 3)) == -1
    assert receiver.apply(payload(1, 0, 3)) == -1  # a retrying sender starts over
    assert receiver.apply(payload(1, 1, 3)) == -1
    assert receiver.apply(payload(1, 2, 3)) == 1 and receiver.pending_version is None
    with pytest.raises(WeightSyncError, match="expected part 0"):
        receiver.apply(payload(2, 1, 2))  # a later part of a version never started
    assert len(loads) == 5


@pytest.mark.parametrize(
    "bad",
    [
        [1, 2],
        {},
        {"format": FORMAT, "transport": "disk", "version": 1},
        {"format": "slime.sync/0", "transport": "echo", "version": 1},
        {"format": FORMAT, "transport": "echo", "version": "1"},
        {"format": FORMAT, "transport": "echo", "version": True},
        {"format": FORMAT, "transport": "echo", "version": -2},
        {"format": FORMAT, "transport": "echo", "version": 1, "part": 2, "num_parts": 2},
    ],
)
def test_bad_headers(bad) -> None:
    receiver, loads = make()
    with pytest.raises(WeightSyncError):
        receiver.apply(bad)
    assert receiver.version == -1 and not loads


def test_checksum_verification_and_loader_failure() -> None:
    loads: list[int] = []
    receiver = Echo(lambda items: loads.append(1), verify_checksums=True)
    with pytest.raises(WeightSyncError, match="no checksum"):
        receiver.apply(payload(1))
    with pytest.raises(WeightSyncError, match="checksum mismatch"):
        receiver.apply({**payload(1), "checksums": {"part0": "0" * 32}})
    assert receiver.version == -1 and not loads
    failing = Echo(lambda items: 1 / 0)
    with pytest.raises(WeightSyncError, match="load_weights failed"):
        failing.apply(payload(1))
    assert failing.version == -1
