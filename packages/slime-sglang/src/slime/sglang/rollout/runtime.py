"""`RolloutRuntime`: what the rollout keeps between calls, and the background event loop it runs on.

The orchestrator calls the rollout synchronously. Every call runs on ONE persistent asyncio loop in a daemon
thread ("slime-rollout-loop"), started on first use, so the `EngineClient`'s aiohttp session (and its pooled
connections to the router) and the reward session are reused across rollouts instead of being rebuilt per
call. The caller's thread just blocks on the result, so the sync entry works from plain code, from Ray actors
and even from inside another running event loop. A runtime is cached per (router URL, `--hf-checkpoint`)
and holds the client and the tokenizer; per-rollout state (semaphore, abort flag)
lives in `RolloutContext`, not here. `shutdown_rollout_runtimes()` closes sessions and stops the loop
(also run at exit). It does not start engines or routers.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import aiohttp

from slime.sglang.client import EngineClient
from slime.types import ConfigError, ContractError

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="slime-rollout-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()

    @property
    def thread(self) -> threading.Thread:
        return self._thread


_lock = threading.Lock()
_loop_thread: _LoopThread | None = None
_runtimes: dict[tuple[str, str], RolloutRuntime] = {}


def run_on_rollout_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the background rollout loop and block until it finishes; exceptions propagate.

    Raises:
        ContractError: called from the rollout loop itself (that would deadlock; await the coroutine instead).
    """
    global _loop_thread
    with _lock:
        if _loop_thread is None:
            _loop_thread = _LoopThread()
        runner = _loop_thread
    if threading.current_thread() is runner.thread:
        coro.close()
        raise ContractError("a synchronous rollout entry was called from the rollout loop; await the async one.")
    return runner.submit(coro).result()


def router_url(args: Any) -> str:
    """`http://{--sglang-router-ip}:{--sglang-router-port}` (set by the orchestrator once the router runs)."""
    ip, port = getattr(args, "sglang_router_ip", None), getattr(args, "sglang_router_port", None)
    if not ip or not port:
        raise ConfigError(
            f"--sglang-router-ip / --sglang-router-port are {ip!r} / {port!r}; the rollout reaches the engines "
            "through the router, so start one and set both (the orchestrator does this after launching it)."
        )
    return f"http://{ip}:{port}"


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: str) -> Any:
    """The HF tokenizer at `path` (`--hf-checkpoint`), loaded once per process."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=True)


class RolloutRuntime:
    """Router client, tokenizer and engine count for one (router, checkpoint) pair. Build with `for_args`."""

    def __init__(self, url: str, hf_checkpoint: str | None) -> None:
        self.url = url
        self.hf_checkpoint = hf_checkpoint
        self.client = EngineClient(url)
        self._reward_session: aiohttp.ClientSession | None = None

    @classmethod
    def for_args(cls, args: Any) -> RolloutRuntime:
        """The cached runtime for `args`' router and checkpoint."""
        key = (router_url(args), str(getattr(args, "hf_checkpoint", None) or ""))
        with _lock:
            if key not in _runtimes:
                _runtimes[key] = cls(*key)
            return _runtimes[key]

    @property
    def tokenizer(self) -> Any:
        if not self.hf_checkpoint:
            raise ConfigError("--hf-checkpoint is not set; the default rollout needs it for the tokenizer.")
        return load_tokenizer(self.hf_checkpoint)

    async def num_engines(self) -> int:
        """Engines behind the router now (asked per rollout: engines may have been replaced); at least 1."""
        return max(1, len(await self.client.worker_urls()))

    def reward_session(self) -> aiohttp.ClientSession | None:
        """A shared aiohttp session for remote reward calls on the rollout loop (None on any other loop)."""
        runner = _loop_thread
        if runner is None or threading.current_thread() is not runner.thread:
            return None  # a session is bound to its loop; elsewhere each reward call opens its own
        if self._reward_session is None or self._reward_session.closed:
            self._reward_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), trust_env=False)
        return self._reward_session

    async def aclose(self) -> None:
        await self.client.close()
        if self._reward_session is not None:
            await self._reward_session.close()
            self._reward_session = None


def shutdown_rollout_runtimes() -> None:
    """Close every runtime's sessions and stop the background loop (idempotent)."""
    global _loop_thread
    with _lock:
        runtimes = list(_runtimes.values())
        _runtimes.clear()
        runner, _loop_thread = _loop_thread, None
    if runner is None:
        return

    async def close_all() -> None:
        await asyncio.gather(*(r.aclose() for r in runtimes), return_exceptions=True)

    runner.submit(close_all()).result(timeout=30)
    runner.stop()


atexit.register(shutdown_rollout_runtimes)
