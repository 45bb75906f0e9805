"""Loopback detection and the peer rule of receivers."""

from __future__ import annotations

import pytest

from slime.sync import DiskReceiver, SharedMemoryReceiver, is_loopback_peer
from slime.types import WeightSyncError


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1", "localhost", " ::1 "])
def test_loopback(host: str) -> None:
    assert is_loopback_peer(host)


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "0.0.0.0",
        "::",
        "192.168.1.2",
        "::ffff:10.0.0.1",
        "",
        "evil.localhost",
        "127.0.0.1.evil.com",
        "not an address",
    ],
)
def test_not_loopback(host: str) -> None:
    assert not is_loopback_peer(host)


def test_handle_payloads_only_from_loopback() -> None:
    receiver = SharedMemoryReceiver(lambda items: None)
    with pytest.raises(WeightSyncError, match="refusing shm weight payloads from '10.1.2.3'"):
        receiver.apply({}, peer="10.1.2.3")
    assert receiver.version == -1


def test_handle_free_payloads_from_trusted_peers(tmp_path) -> None:
    receiver = DiskReceiver(lambda items: None, trusted_peers={"10.1.2.3"})
    with pytest.raises(WeightSyncError, match="refusing disk weight payloads from '10.9.9.9'"):
        receiver.apply({}, peer="10.9.9.9")
    with pytest.raises(WeightSyncError, match="format/transport"):  # the peer passed; the payload is empty
        receiver.apply({}, peer="10.1.2.3")
