"""Remote reward model (`--rm-type remote_rm`): POST `{prompt, response, label}` to `--rm-url`, with retries.

Each try has a timeout; failed tries (connection errors, timeouts, HTTP 429 and 5xx) are retried after
`min(backoff_base_s * 2**k, max_backoff_s)` seconds plus up to `jitter_s` of random jitter. Other 4xx
answers mean the request itself is wrong and fail at once. After the last try an `EngineError` names the
URL, the number of tries and the last failure. The answer's JSON is returned as-is (a number or a dict for
`--reward-key`). The caller may pass an open `aiohttp.ClientSession` to reuse connections.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import aiohttp

from slime.types import ConfigError, EngineError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RemoteRewardConfig:
    """Where the reward server is and how hard to try."""

    url: str
    """`--rm-url`: the full endpoint, e.g. `http://127.0.0.1:8000/reward`."""
    max_attempts: int = 10
    """Tries per sample before giving up (slime: 10)."""
    timeout_s: float = 120.0
    """Time limit of one try, connection included."""
    backoff_base_s: float = 1.0
    """First retry delay; it doubles per try up to `max_backoff_s`."""
    max_backoff_s: float = 30.0
    """Cap of the exponential part of the delay."""
    jitter_s: float = 1.0
    """Uniform random extra delay in [0, jitter_s], so many samples do not retry in lockstep."""

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"--rm-url is {self.url!r}; remote_rm needs an http(s) URL such as http://host:port/path.")
        if self.max_attempts < 1:
            raise ConfigError(f"RemoteRewardConfig.max_attempts is {self.max_attempts}; it must be >= 1.")
        for name in ("timeout_s", "backoff_base_s", "max_backoff_s", "jitter_s"):
            if getattr(self, name) < 0 or (name == "timeout_s" and self.timeout_s == 0):
                raise ConfigError(f"RemoteRewardConfig.{name} is {getattr(self, name)}; it must be positive.")

    @classmethod
    def from_args(cls, args: Any) -> RemoteRewardConfig:
        """From `--rm-url`; the optional attributes `rm_max_attempts` / `rm_timeout_s` override the defaults."""
        url = getattr(args, "rm_url", None)
        if not url:
            raise ConfigError("--rm-type remote_rm needs --rm-url (the reward server's endpoint).")
        return cls(
            url=url,
            max_attempts=int(getattr(args, "rm_max_attempts", None) or 10),
            timeout_s=float(getattr(args, "rm_timeout_s", None) or 120.0),
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (0-based)."""
        return min(self.backoff_base_s * 2**attempt, self.max_backoff_s) + random.uniform(0, self.jitter_s)


class _Retryable(Exception):
    pass


async def _post_once(session: aiohttp.ClientSession, config: RemoteRewardConfig, payload: dict[str, Any]) -> Any:
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    try:
        async with session.post(config.url, json=payload, timeout=timeout) as resp:
            text = await resp.text()
            if resp.status == 429 or resp.status >= 500:
                raise _Retryable(f"HTTP {resp.status}: {text[:200]}")
            if resp.status >= 400:
                raise EngineError(
                    f"reward server {config.url} rejected the request with HTTP {resp.status}: {text[:200]}. "
                    "Check that it accepts POST {prompt, response, label}."
                )
            try:
                return await resp.json(content_type=None)
            except ValueError as exc:
                raise EngineError(f"reward server {config.url} answered non-JSON: {text[:200]!r}") from exc
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}") from exc


async def post_reward(
    config: RemoteRewardConfig, payload: dict[str, Any], *, session: aiohttp.ClientSession | None = None
) -> Any:
    """POST `payload` and return the answer's JSON, retrying as configured.

    Raises:
        EngineError: the server kept failing for `max_attempts` tries, or refused the request (4xx).
    """
    own = session is None
    session = session or aiohttp.ClientSession()
    last = "no try made"
    try:
        for attempt in range(config.max_attempts):
            try:
                return await _post_once(session, config, payload)
            except _Retryable as exc:
                last = str(exc)
            if attempt + 1 < config.max_attempts:
                await asyncio.sleep(config.delay(attempt))
    finally:
        if own:
            await session.close()
    raise EngineError(
        f"reward server {config.url} failed {config.max_attempts} times (each with a {config.timeout_s:g} s "
        f"timeout); last error: {last}. Check --rm-url and that the server is up."
    )


def reward_payload(prompt: Any, response: str, label: Any) -> dict[str, Any]:
    """The JSON body slime's remote_rm sends."""
    return {"prompt": prompt, "response": response, "label": label}
