"""`LocalServerConfig`: how one local (transformers-backed) SGLang-protocol server is run.

Built from `python -m slime.sglang.local_server` flags, which use SGLang's own flag names where one exists.
Validation only; it does not start anything.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from slime.types import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class LocalServerConfig:
    """Settings of one local server process."""

    model_path: str
    """HF checkpoint folder (config, safetensors, tokenizer): SGLang's `--model-path`."""
    host: str = "127.0.0.1"
    """Bind address; loopback by default. Binding elsewhere needs `allow_remote=True`."""
    port: int = 30000
    """HTTP port."""
    tp_size: int = 1
    """Accepted for command-line parity with SGLang; the local server runs one process, so it must be 1."""
    max_batch_size: int = 256
    """Most requests decoded together (SGLang: `--max-running-requests`); more wait in a queue."""
    max_prefill_tokens: int = 16384
    """Prompt tokens admitted in one prefill step (at least one request is always admitted)."""
    dtype: str = "auto"
    """`auto` keeps the checkpoint's dtype; or float32 / bfloat16 / float16."""
    random_seed: int = 0
    """Seed of the server-wide sampling generator (requests with `sampling_seed` use their own)."""
    num_threads: int = 1
    """torch CPU threads. One per server is fastest when several servers share a few cores."""
    weight_version: str = "default"
    """Initial `weight_version` reported in responses (SGLang's default is "default")."""
    allow_remote: bool = False
    """Allow a non-loopback `host`. Weight endpoints that carry process-local handles stay loopback-only."""
    trusted_peers: tuple[str, ...] = ()
    """Hosts besides loopback allowed to send disk / delta / broadcast weight payloads."""

    def __post_init__(self) -> None:
        if not self.model_path:
            raise ConfigError("`model_path` is empty; pass --model-path with an HF checkpoint folder.")
        if self.tp_size != 1:
            raise ConfigError(
                f"`tp_size` is {self.tp_size} but the local server runs one process; use tp_size 1 or real SGLang."
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"`port` {self.port} is not a TCP port; pass --port in [0, 65535].")
        for name in ("max_batch_size", "max_prefill_tokens", "num_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1 (got {getattr(self, name)}).")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"`dtype` {self.dtype!r} is not one of auto, float32, bfloat16, float16.")
        if not self.allow_remote and not is_loopback(self.host):
            raise ConfigError(
                f"`host` {self.host!r} is not a loopback address; servers bind 127.0.0.1 unless --allow-remote is set."
            )


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
