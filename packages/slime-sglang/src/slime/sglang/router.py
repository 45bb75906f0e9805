"""`Router`: the real sglang-router (`python -m sglang_router.launch_router`) or an external one, and its workers.

sglang-router 0.3.2's worker API (the old `/add_worker?url=` answers 404): `POST /workers {"url"}` -> 202 with a
`worker_id`, registration finishes in the background (it probes gRPC twice, then `/health`, `/server_info`,
`/model_info`); `GET /workers` lists `{id, url, is_healthy, ...}`; `DELETE /workers/<id>` removes one. A
launched router binds 127.0.0.1 for both its HTTP and Prometheus ports (its defaults are 0.0.0.0). With
`RouterConfig.ip` set, nothing is launched and engines are registered with that router. This module does not
start engines.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

from slime.sglang.blocking_http import is_ok, request_json
from slime.sglang.managed_process import ManagedProcess
from slime.sglang.ports import allocate_ports
from slime.types import ConfigError, EngineError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RouterConfig:
    """Which router to use and how to launch it."""

    ip: str | None = None
    """An external router's address (slime: `--sglang-router-ip`); None launches one on 127.0.0.1."""
    port: int | None = None
    """The external router's port, or the port to launch on (slime: `--sglang-router-port`); None picks one."""
    policy: str | None = None
    """Routing policy (`round_robin`, `cache_aware`, ...); None keeps the router's default."""
    request_timeout_secs: int = 14400
    """Router-side request timeout (slime: `--sglang-router-request-timeout-secs`)."""
    health_check_interval_secs: int = 5
    """How often the router probes each worker's `/health`."""
    health_failure_threshold: int = 2
    """Failed probes before the router marks a worker unhealthy."""
    extra_args: tuple[str, ...] = ()
    """More `launch_router` flags, in its own spelling."""
    startup_timeout_s: float = 60.0
    """How long to wait for a launched router's `/health`, and for a worker registration to complete."""
    log_dir: str | None = None
    """Folder for the router log (a temp file when None)."""

    def __post_init__(self) -> None:
        if self.ip is not None and self.port is None:
            raise ConfigError(f"--sglang-router-ip is {self.ip!r} but --sglang-router-port is unset; set both.")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"--sglang-router-port {self.port} is not a TCP port.")
        for name in ("request_timeout_secs", "health_check_interval_secs", "health_failure_threshold"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1 (got {getattr(self, name)}).")

    @property
    def external(self) -> bool:
        return self.ip is not None


class Router:
    """A started (or connected) router; `start()` first."""

    def __init__(self, config: RouterConfig | None = None) -> None:
        self.config = config or RouterConfig()
        self._process: ManagedProcess | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise EngineError("the router has not been started; call Router.start() first")
        return self._url

    def start(self) -> str:
        """Launch the router (or check the external one answers) and return its URL.

        Raises:
            EngineError: the router exited, or did not answer `/health` in time (with its log tail).
        """
        config = self.config
        if config.external:
            self._url = f"http://{config.ip}:{config.port}"
            if not is_ok(self._url + "/health"):
                raise EngineError(
                    f"no router answers {self._url}/health; check --sglang-router-ip/--sglang-router-port"
                )
            return self._url
        port, prometheus_port = allocate_ports(2)
        port = config.port or port
        self._process = ManagedProcess(self.command(port, prometheus_port), name="router", log_path=self._log(port))
        self._process.start()
        self._url = f"http://127.0.0.1:{port}"
        self._process.wait_http_ok(self._url, ("/health",), timeout_s=config.startup_timeout_s)
        return self._url

    def command(self, port: int, prometheus_port: int) -> list[str]:
        """The `launch_router` argv (loopback only, circuit breaker off: slime removes dead workers itself)."""
        c = self.config
        command = [sys.executable, "-m", "sglang_router.launch_router", "--host", "127.0.0.1", "--port", str(port),
                   "--prometheus-host", "127.0.0.1", "--prometheus-port", str(prometheus_port),
                   "--request-timeout-secs", str(c.request_timeout_secs),
                   "--health-check-interval-secs", str(c.health_check_interval_secs),
                   "--health-failure-threshold", str(c.health_failure_threshold),
                   "--disable-circuit-breaker", "--log-level", "warn"]  # fmt: skip
        if c.policy:
            command += ["--policy", c.policy]
        return command + list(c.extra_args)

    def workers(self) -> list[dict[str, Any]]:
        """The router's worker list (`id`, `url`, `is_healthy`, ...)."""
        status, body = request_json("GET", self.url + "/workers")
        if status != 200 or not isinstance(body, dict):
            raise EngineError(f"GET {self.url}/workers answered HTTP {status}: {body!r}")
        return list(body.get("workers", []))

    def worker_id(self, url: str) -> str | None:
        return next((str(w["id"]) for w in self.workers() if _same(w.get("url"), url)), None)

    def add_worker(self, url: str) -> str:
        """Register engine `url` and wait until the router lists it as healthy; returns the worker id.

        Raises:
            EngineError: the router refused it, or it was not healthy within `startup_timeout_s`.
        """
        status, body = request_json("POST", self.url + "/workers", {"url": url, "worker_type": "regular"})
        if status not in (200, 201, 202) or not isinstance(body, dict):
            raise EngineError(f"router {self.url} refused worker {url}: HTTP {status} {body!r}")
        worker_id = str(body.get("worker_id") or "")
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:
            listed = next((w for w in self.workers() if _same(w.get("url"), url)), None)
            if listed is not None and listed.get("is_healthy"):
                return str(listed.get("id") or worker_id)
            time.sleep(0.2)
        raise EngineError(
            f"router {self.url} did not list worker {url} as healthy within {self.config.startup_timeout_s:.0f} s "
            f"(does {url}/health, /server_info and /model_info answer?){self._tail()}"
        )

    def remove_worker(self, url: str) -> bool:
        """Deregister engine `url` (by its id; the router refuses URLs). False if it was not registered."""
        worker_id = self.worker_id(url)
        if worker_id is None:
            return False
        status, body = request_json("DELETE", f"{self.url}/workers/{worker_id}")
        if status not in (200, 202, 204, 404):
            raise EngineError(f"router {self.url} refused to remove {url} ({worker_id}): HTTP {status} {body!r}")
        deadline = time.monotonic() + self.config.startup_timeout_s
        while self.worker_id(url) is not None:
            if time.monotonic() > deadline:
                raise EngineError(f"router {self.url} still lists {url} after DELETE /workers/{worker_id}")
            time.sleep(0.1)
        return True

    def remove_dead_workers(self, is_dead: Callable[[str], bool] | None = None) -> list[str]:
        """Remove every worker the router marks unhealthy or `is_dead(url)` says is gone; returns their URLs."""
        dead = [str(w["url"]) for w in self.workers()
                if not w.get("is_healthy", True) or (is_dead is not None and is_dead(str(w["url"])))]  # fmt: skip
        for url in dead:
            self.remove_worker(url)
        return dead

    def stop(self) -> None:
        """Stop a launched router (an external one is left alone)."""
        if self._process is not None:
            self._process.stop()

    def _log(self, port: int) -> str | None:
        return None if self.config.log_dir is None else f"{self.config.log_dir}/router-{port}.log"

    def _tail(self) -> str:
        return "" if self._process is None else f"\nrouter log (last lines):\n{self._process.log_tail()}"


def _same(a: object, b: str) -> bool:
    return isinstance(a, str) and a.rstrip("/") == b.rstrip("/")
