"""`EngineGroup`: N engines behind one router, in one process (no Ray): start, register, heal, shut down.

`start()` starts (or connects to) the router, launches the engines concurrently, and registers each with the
router once it generates. `remove_dead_engines()` deregisters and reaps engines that crashed or that the
router marks unhealthy; `add_engine()` launches a replacement. `client` is one shared `EngineClient` on the
router for generation and on every live engine for control calls. `shutdown()` deregisters from an external
router and stops every process it started. This module does not decide when to heal; the caller does.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses

from slime.sglang.blocking_http import is_ok
from slime.sglang.client import EngineClient
from slime.sglang.engine_process import EngineProcess
from slime.sglang.router import Router, RouterConfig
from slime.sglang.server_args import EngineConfig
from slime.types import ConfigError, EngineError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class EngineGroupConfig:
    """Engines and router of one served model."""

    engine: EngineConfig
    """How each engine is launched."""
    num_engines: int = 1
    """Engines to launch (slime: rollout GPUs / --rollout-num-gpus-per-engine)."""
    router: RouterConfig = dataclasses.field(default_factory=RouterConfig)
    """The router to launch or connect to."""
    server_concurrency: int = 512
    """In-flight requests per engine the client allows (slime: `--sglang-server-concurrency`)."""

    def __post_init__(self) -> None:
        if self.num_engines < 1:
            raise ConfigError(f"`num_engines` must be >= 1 (got {self.num_engines}); give the rollout some GPUs.")
        if self.server_concurrency < 1:
            raise ConfigError(f"--sglang-server-concurrency must be >= 1 (got {self.server_concurrency}).")


class EngineGroup:
    """Use as a context manager, or call `start()` and `shutdown()`."""

    def __init__(self, config: EngineGroupConfig) -> None:
        self.config = config
        self.router = Router(config.router)
        self.engines: list[EngineProcess] = []
        self._next_index = 0
        self._client: EngineClient | None = None

    def __enter__(self) -> EngineGroup:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def router_url(self) -> str:
        return self.router.url

    @property
    def engine_urls(self) -> list[str]:
        return [e.url for e in self.engines]

    @property
    def client(self) -> EngineClient:
        """The shared client (close it with `await group.client.close()` in the loop that used it)."""
        if self._client is None:
            engine = self.config.engine
            self._client = EngineClient(
                self.router_url,
                max_connections=self.config.server_concurrency * self.config.num_engines,
                backend=engine.backend,
                tp_size=engine.tp_size,
            )
        return self._client

    def start(self) -> None:
        """Start the router and every engine; on any failure stop what was started and raise `EngineError`."""
        try:
            self.router.start()
            self._launch(self.config.num_engines)
        except BaseException:
            self.shutdown()
            raise

    def add_engine(self) -> str:
        """Launch one more engine, register it, and return its URL (used to replace a dead one)."""
        return self._launch(1)[0]

    def remove_dead_engines(self) -> list[str]:
        """Deregister and stop engines that exited, fail `/health`, or the router marks unhealthy.

        Returns the URLs removed. Requests in flight on them fail (or the router retries them elsewhere).
        """
        dead = [e for e in self.engines if not e.is_alive() or not is_ok(e.url + "/health", timeout_s=5)]
        removed = set(self.router.remove_dead_workers(lambda url: url in {e.url for e in dead}))
        for engine in list(self.engines):
            if engine in dead or engine.url in removed:
                self.router.remove_worker(engine.url)  # no-op if already gone
                engine.stop()
                self.engines.remove(engine)
                removed.add(engine.url)
        return sorted(removed)

    def shutdown(self) -> None:
        """Deregister (external router) and stop all engines, then a launched router. Safe to call twice."""
        for engine in self.engines:
            if self.config.router.external and engine.port is not None:
                try:
                    self.router.remove_worker(engine.url)
                except EngineError:
                    pass  # the external router is gone too: nothing to deregister from
            engine.stop()
        self.engines = []
        self.router.stop()

    def _free_gpu_slots(self, count: int) -> list[int]:
        """GPU slots for `count` new engines: those of engines no longer in the group first (a replacement takes
        the dead engine's GPUs), then new ones."""
        taken = {e.gpu_slot for e in self.engines}
        slots = [slot for slot in range(self.config.num_engines) if slot not in taken]
        beyond = max(taken | set(slots), default=-1) + 1
        slots += range(beyond, beyond + max(0, count - len(slots)))
        return slots[:count]

    def _launch(self, count: int) -> list[str]:
        slots = self._free_gpu_slots(count)
        fresh = [
            EngineProcess(self.config.engine, index=self._next_index + i, gpu_slot=slot)
            for i, slot in enumerate(slots)
        ]
        self._next_index += count
        self.engines.extend(fresh)  # before launching, so shutdown() reaches them whatever happens
        with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
            futures = [pool.submit(engine.launch) for engine in fresh]
            errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise EngineError(f"{len(errors)} of {count} engines failed to start; first error:\n{errors[0]}")
        for engine in fresh:
            self.router.add_worker(engine.url)
        return [e.url for e in fresh]
