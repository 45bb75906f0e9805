"""Run CPU-heavy synchronous graders (math-verify) off the rollout's event loop, in worker processes.

Why processes and not threads: math-verify bounds each parse / verify step with `signal.alarm`, which only
works in a process's main thread; a worker process runs the grader in its main thread, so pathological
model outputs still time out, and sympy's CPU time does not stall the event loop that drives generation.
The pool is created on first use with the `spawn` start method (the rollout process has threads), is
shared by every event loop of the process, and is shut down at exit. A broken pool (a worker died) is
replaced once. This module knows nothing about samples or reward types.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

GRADER_TIMEOUT_S = 60.0
"""Upper bound on one grading call as seen by the caller (math-verify's own steps time out sooner)."""
_MAX_WORKERS_ENV = "SLIME_REWARD_WORKERS"

_lock = threading.Lock()
_executor: ProcessPoolExecutor | None = None


def _num_workers() -> int:
    configured = os.environ.get(_MAX_WORKERS_ENV)
    if configured:
        return max(1, int(configured))
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def grading_executor() -> ProcessPoolExecutor:
    """The process pool (created on first call; `SLIME_REWARD_WORKERS` sets its size, default min(4, cores/2))."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ProcessPoolExecutor(max_workers=_num_workers(), mp_context=multiprocessing.get_context("spawn"))
        return _executor


def shutdown_grading_pool() -> None:
    """Stop the worker processes (idempotent; the next grading call starts a new pool)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)


def _discard_broken(broken: ProcessPoolExecutor) -> None:
    global _executor
    with _lock:
        if _executor is broken:
            _executor = None
    broken.shutdown(wait=False, cancel_futures=True)


async def run_grader(fn: Callable[..., T], *args: Any, timeout_s: float = GRADER_TIMEOUT_S) -> T:
    """`fn(*args)` in a worker process; `fn` must be a module-level function with picklable arguments.

    Raises:
        TimeoutError: the call took longer than `timeout_s` (the worker may still be busy with it).
    """
    loop = asyncio.get_running_loop()
    for attempt in range(2):
        executor = grading_executor()
        try:
            return await asyncio.wait_for(loop.run_in_executor(executor, fn, *args), timeout_s)
        except BrokenProcessPool:
            if attempt:
                raise
            logger.warning("reward grading pool broke (a worker died); starting a new one")
            _discard_broken(executor)
    raise AssertionError("unreachable")


atexit.register(shutdown_grading_pool)
