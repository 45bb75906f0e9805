"""Free-port allocation for engines and routers on one host, without handing the same port out twice.

A port is drawn at random from a range below Linux's ephemeral range (32768+), so outgoing connections of
other programs do not take it between our check and the server's bind; it must bind on the host right now
and must not have been handed out before by this process. Servers that still lose a race are restarted on
new ports by their launcher (`EngineProcess` retries on "address already in use"). This module starts nothing.
"""

from __future__ import annotations

import random
import socket
import threading

from slime.types import EngineError

DEFAULT_RANGE = (20000, 32000)

_lock = threading.Lock()
_handed_out: set[int] = set()


def is_port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when `port` can be bound on `host` now (and on 0.0.0.0, which SGLang's helper ports use)."""
    for address in {host, "0.0.0.0"}:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def allocate_ports(count: int, *, host: str = "127.0.0.1", port_range: tuple[int, int] = DEFAULT_RANGE) -> list[int]:
    """`count` distinct free ports, never returned before by this process.

    Raises:
        EngineError: the range has no `count` free ports left.
    """
    low, high = port_range
    rng = random.Random()
    with _lock:
        chosen: list[int] = []
        for _ in range(50 * count + 200):
            if len(chosen) == count:
                break
            port = rng.randrange(low, high)
            if port in _handed_out or port in chosen or not is_port_free(port, host):
                continue
            chosen.append(port)
        if len(chosen) < count:
            raise EngineError(f"found only {len(chosen)} of {count} free ports in [{low}, {high}) on {host}")
        _handed_out.update(chosen)
        return chosen
