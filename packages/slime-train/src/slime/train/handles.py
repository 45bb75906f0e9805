"""Handles: call a host's methods the same way whether it lives in this process or in a Ray actor.

The loops drive `RolloutHost` and `TrainerHost` through these, so they run unchanged with Ray (the demo,
multi-node runs) and without it (tests, debugging in one process). A group handle fans one call out to
every rank and returns the results in rank order. No logic lives here beyond remoting.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol


class Pending(Protocol):
    """A call in flight."""

    def result(self) -> Any:
        """Wait for the call and return its value (re-raising its exception)."""
        ...

    def done(self) -> bool:
        """Whether the call has finished (without waiting)."""
        ...


class LocalHandle:
    """A host object in this process; calls run on one worker thread so they can overlap the caller."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=type(host).__name__)

    def submit(self, method: str, *args: Any, **kwargs: Any) -> Future[Any]:
        """Start `host.method(*args, **kwargs)`."""
        return self._pool.submit(getattr(self.host, method), *args, **kwargs)

    def peek(self, method: str) -> Any:
        """Call a read-only `host.method()` now, beside a running call (progress counters)."""
        return getattr(self.host, method)()

    def close(self) -> None:
        """Stop the worker thread."""
        self._pool.shutdown(wait=True)


class _RayPending:
    def __init__(self, ref: Any) -> None:
        self._ref = ref

    def result(self) -> Any:
        import ray

        return ray.get(self._ref)

    def done(self) -> bool:
        import ray

        ready, _ = ray.wait([self._ref], timeout=0)
        return bool(ready)


class RayHandle:
    """A Ray actor handle; `submit` is `actor.method.remote(...)`."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def submit(self, method: str, *args: Any, **kwargs: Any) -> _RayPending:
        """Start the remote call."""
        return _RayPending(getattr(self.actor, method).remote(*args, **kwargs))

    def peek(self, method: str) -> Any:
        """Call a read-only method that the actor serves in its own concurrency group (see `actors.py`), so it
        answers while another call runs."""
        import ray

        return ray.get(getattr(self.actor, method).remote())

    def close(self) -> None:
        """Kill the actor."""
        import ray

        ray.kill(self.actor)


class Group:
    """Several handles driven together (the ranks of a trainer)."""

    def __init__(self, handles: Sequence[LocalHandle | RayHandle]) -> None:
        self.handles = list(handles)

    def submit(self, method: str, *args: Any, **kwargs: Any) -> list[Pending]:
        """Start the call on every rank."""
        return [h.submit(method, *args, **kwargs) for h in self.handles]

    def call(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Run the call on every rank and wait; results in rank order."""
        return [p.result() for p in self.submit(method, *args, **kwargs)]

    def close(self) -> None:
        """Close every handle."""
        for handle in self.handles:
            handle.close()
