"""Who may hand an engine weights: loopback peers always, other hosts only when configured.

Shared-memory and CUDA-IPC handles name memory on *this* machine, and opening them maps another process's
memory into the engine, so receivers accept them only from loopback. Transports whose payloads carry no
handles (disk, delta, broadcast) may also trust the hosts of the configured group (`trusted_peers`). A peer of
`None` means an in-process call, which is trusted. No name resolution happens here: a peer is the numeric
remote address the engine's HTTP server saw.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from slime.types import WeightSyncError


def is_loopback_peer(host: str) -> bool:
    """True for `127.0.0.0/8`, `::1`, IPv4-mapped loopback (`::ffff:127.0.0.1`) and the literal `localhost`.

    Accepts a bracketed IPv6 literal (`[::1]`); anything unparsable is not loopback.
    """
    text = host.strip()
    if text.lower() == "localhost":
        return True
    text = text.removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_peer(peer: str | None, trusted_peers: Collection[str] = (), *, what: str = "weight payloads") -> None:
    """Raise `WeightSyncError` unless `peer` is None (in-process), loopback, or listed in `trusted_peers`."""
    if peer is None or is_loopback_peer(peer) or peer in trusted_peers:
        return
    allowed = "loopback" + (f" or {sorted(trusted_peers)}" if trusted_peers else "")
    raise WeightSyncError(f"refusing {what} from {peer!r}: only {allowed} may send them.")
