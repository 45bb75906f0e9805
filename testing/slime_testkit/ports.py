"""A rendezvous port for test worlds that start their ranks later (torch.distributed over 127.0.0.1).

The usual `bind(("127.0.0.1", 0))` hands out a port from the kernel's ephemeral range; the ranks bind it seconds
later, after their imports, and by then any outgoing connection or other `bind(0)` on the machine may have taken it
(CI saw `EADDRINUSE` on a Megatron world). Ports below the ephemeral range are never handed out that way, so a
random free one there stays free unless another test picks the same number. It does not reserve the port.
"""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20000, 32000
"""Below Linux's default ephemeral range (32768-60999)."""


def rendezvous_port(host: str = "127.0.0.1", tries: int = 200) -> int:
    """A random port in [LOW, HIGH) that is free on `host` right now."""
    rng = random.SystemRandom()
    for _ in range(tries):
        port = rng.randrange(LOW, HIGH)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in [{LOW}, {HIGH}) on {host} after {tries} tries")
