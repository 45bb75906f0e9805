"""`--use-fault-tolerance`: watch the engines, heal the group, and rerun what a crash interrupted.

Three parts, used by the rollout host and the loops:

- `HealthMonitor`: a daemon thread that probes every engine's `/health_generate` each
  `--rollout-health-check-interval` s (after `--rollout-health-check-first-wait` s, and not while the engines are
  released for training); an engine that is dead, or fails to answer within `--rollout-health-check-timeout` s,
  is killed and deregistered at once, so the router stops sending it work.
- `GroupHealer`: `heal()` restarts a dead router on its old port and replaces missing engines
  (`slime.sglang.group_healing`), under the lock the monitor also takes. slime restarts engines "before the next
  weight update": the loops call it right before pushing weights, so a replacement serves only after it holds
  the current weight version.
- `rerun_on_failure`: the loops' retry of a rollout or a weight update that failed with an engine, router, reward
  server or weight-sync error: recover (heal + re-push the current weights), then run it again, at most
  `MAX_ATTEMPTS` times. The rollout host puts the data source back as it was before a failed rollout, so the
  rerun serves the same samples: none lost, none twice.

Requests in flight on a killed engine are usually retried by sglang-router on another worker; the rerun covers
the rest (a single engine, a dead router, a failing reward server). Nothing here trains or generates.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from slime.types import EngineError, WeightSyncError

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ATTEMPTS = 3
"""Tries of one rollout (or weight update) before the run gives up."""
RECOVERABLE = (EngineError, WeightSyncError)


class GroupHealer:
    """Serialises changes to one `EngineGroup` between the monitor thread and the host."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.lock = threading.Lock()
        self.history: list[dict[str, Any]] = []

    def heal(self) -> dict[str, Any]:
        """Restart a dead router, replace dead or missing engines; returns what changed (empty dict: nothing)."""
        from slime.sglang.group_healing import heal_group

        with self.lock:
            report = heal_group(self.group)
        if not report.changed:
            return {}
        done = {"router_restarted": report.router_restarted, "removed": list(report.removed),
                "added": list(report.added)}  # fmt: skip
        logger.warning("fault tolerance: healed the engine group: %s", done)
        self.history.append(done)
        return done

    def check_engines(self, is_healthy: Callable[[Any], bool], keep_going: Callable[[], bool]) -> list[str]:
        """Kill and deregister every engine `is_healthy` rejects; returns their URLs.

        Holds the lock for the whole round, so an engine that `heal()` is still launching is never probed.
        """
        with self.lock:
            failed = [e for e in list(self.group.engines) if keep_going() and not is_healthy(e)]
            for engine in failed:
                logger.warning("fault tolerance: engine %s failed its health check; killing it", engine.url)
                engine.kill()
            if failed:
                self.group.remove_dead_engines()
        return [e.url for e in failed]


class HealthMonitor:
    """Probe engines in a daemon thread; see the module docstring."""

    def __init__(self, healer: GroupHealer, *, interval_s: float, timeout_s: float, first_wait_s: float) -> None:
        self.healer = healer
        self.interval_s, self.timeout_s, self.first_wait_s = interval_s, timeout_s, first_wait_s
        self._stop = threading.Event()
        self._pauses: set[str] = set()  # why probing is off now ("memory", "weights"); empty = probing
        self._lock = threading.Lock()
        self._resume_at = time.monotonic() + first_wait_s
        self._thread = threading.Thread(target=self._run, name="slime-health-monitor", daemon=True)

    @classmethod
    def from_args(cls, healer: GroupHealer, args: Any) -> HealthMonitor:
        return cls(
            healer,
            interval_s=float(args.rollout_health_check_interval),
            timeout_s=float(args.rollout_health_check_timeout),
            first_wait_s=float(args.rollout_health_check_first_wait),
        )

    def start(self) -> HealthMonitor:
        self._thread.start()
        return self

    def pause(self, reason: str = "memory") -> None:
        """Stop probing while `reason` holds: engines released ("memory": a probe would wait for generation that
        cannot run) or receiving weights ("weights": SGLang pauses generation during an update)."""
        with self._lock:
            self._pauses.add(reason)

    def resume(self, reason: str = "memory") -> None:
        """`reason` is over; once no reason is left, probe again after the first-wait grace period."""
        with self._lock:
            self._pauses.discard(reason)
            if not self._pauses:
                self._resume_at = time.monotonic() + self.first_wait_s

    @property
    def paused(self) -> bool:
        """Whether any reason holds probing off."""
        with self._lock:
            return bool(self._pauses)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 10)

    def check_once(self) -> list[str]:
        """Probe every engine now; kill and deregister those that fail. Returns their URLs."""
        from slime.sglang.blocking_http import is_ok

        def is_healthy(engine: Any) -> bool:
            return engine.is_alive() and is_ok(engine.url + "/health_generate", timeout_s=self.timeout_s)

        return self.healer.check_engines(is_healthy, lambda: not (self.paused or self._stop.is_set()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.paused or time.monotonic() < self._resume_at:
                continue
            try:
                self.check_once()
            except Exception as exc:  # the monitor must outlive a failing probe; the loop's rerun reports for real
                logger.warning("fault tolerance: health check round failed: %r", exc)


def rerun_on_failure(
    first: Callable[[], T], again: Callable[[], T], recover: Callable[[], Any], *, what: str
) -> tuple[T, int]:
    """`first()`, and after a recoverable failure `recover()` then `again()`, up to `MAX_ATTEMPTS` tries in all.

    Returns the result and the number of reruns. The last failure is re-raised as an `EngineError` that names
    `what`, the number of tries and the cause.
    """
    attempt = first
    for reruns in range(MAX_ATTEMPTS):
        try:
            return attempt(), reruns
        except RECOVERABLE as exc:
            if reruns + 1 == MAX_ATTEMPTS:
                raise EngineError(
                    f"{what} failed {MAX_ATTEMPTS} times despite --use-fault-tolerance; last error: {exc}"
                ) from exc
            logger.warning("fault tolerance: %s failed (%s); healing and running it again", what, exc)
            recover()
            attempt = again
    raise AssertionError("unreachable")
