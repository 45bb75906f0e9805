"""`EngineProcess`: launch one engine (SGLang or the local server) as a subprocess and wait until it serves.

`launch()` picks free ports, starts the engine under the supervisor (see `managed_process`), and waits for
`/health` then `/health_generate` (the first proves the HTTP server is up, the second that the model
generates). If the engine lost a port race ("address already in use" in its log) it is relaunched on new
ports, up to `PORT_RETRIES` times. Failures raise `EngineError` with the command and the log tail. `stop()`
ends the whole process tree; a parent that dies takes its engines with it. It does not register with routers.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from slime.sglang.managed_process import ManagedProcess
from slime.sglang.ports import allocate_ports
from slime.sglang.server_args import EngineConfig, known_server_flags, launch_command, validate_server_args
from slime.types import ConfigError, EngineError

PORT_RETRIES = 3
HEALTH_PATHS = ("/health", "/health_generate")
SGLANG_DEFAULT_ENV = (("SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION", "false"),)
"""SGLang's `/health` generates a token by default. The router probes `/health` every few seconds, and a probe that
reaches an engine whose memory is released (colocate) crashes its scheduler (seen on an H100 with SGLang 0.5.17).
With this off `/health` only proves the server answers; the deep probe is `/health_generate`, which slime sends
itself and never while memory is released. A value set in the environment or `EngineConfig.env` wins."""


NCCL_CUMEM_ENV = ("NCCL_CUMEM_ENABLE", "1")
"""For SGLang engines that join an NCCL weight group with a trainer process (disaggregated). SGLang sets
`NCCL_CUMEM_ENABLE=0` in its own process unless the variable is set, while the trainer keeps NCCL's default
(cuMem on). A group between a cuMem rank and a legacy-IPC rank fails at the first broadcast with "Cuda failure
'invalid argument'" (seen on 2 x H200, SGLang 0.5.17, NCCL 2.28.9), so slime.train gives such engines NCCL's
default; a value in the environment reaches both sides alike and wins."""


def engine_env(config: EngineConfig, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables an engine process gets on top of the inherited environment."""
    defaults = SGLANG_DEFAULT_ENV if config.backend == "sglang" else ()
    return {**{name: value for name, value in defaults if name not in environ}, **dict(config.env)}


class EngineProcess:
    """One engine; `index` only names its log file."""

    def __init__(self, config: EngineConfig, *, index: int = 0, gpu_slot: int | None = None) -> None:
        """`index` names the engine (logs); `gpu_slot` (default `index`) picks its GPUs, see `launch_command`."""
        self.config = config
        self.index = index
        self.gpu_slot = index if gpu_slot is None else gpu_slot
        self.port: int | None = None
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EngineError(f"engine {self.index} has not been launched")
        return f"http://{self.config.host}:{self.port}"

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise EngineError(f"engine {self.index} has not been launched")
        return self._process

    def launch(self) -> str:
        """Start the engine and block until it generates; returns its URL.

        Raises:
            ConfigError: sglang is not installed (sglang backend), or a pass-through flag the engine does not know.
            EngineError: the engine exited or did not become healthy in `startup_timeout_s`.
        """
        if self.config.backend == "sglang" and importlib.util.find_spec("sglang") is None:
            raise ConfigError(
                f"backend 'sglang' needs sglang in this interpreter ({sys.executable}): install slime-sglang[engine] "
                "on the GPU machine, or use the local backend (slime.sglang.local_server) on CPU."
            )
        validate_server_args(self.config.server_args, known_server_flags(self.config.backend),
                             backend=self.config.backend)  # fmt: skip
        for attempt in range(PORT_RETRIES + 1):
            self.start()
            try:
                self.wait_healthy()
                return self.url
            except EngineError as exc:
                self.stop()
                if attempt == PORT_RETRIES or "address already in use" not in self.process.log_tail(200).lower():
                    raise EngineError(f"engine {self.index} ({self.config.backend}) failed to start: {exc}") from exc
                self._process = None
        raise AssertionError("unreachable")

    def start(self) -> None:
        """Spawn the engine on fresh ports; returns at once (see `wait_healthy`)."""
        port, nccl_port = allocate_ports(2, host=self.config.host)
        self.port = port
        log_path = None
        if self.config.log_dir is not None:
            log_path = Path(self.config.log_dir) / f"engine-{self.index}-{port}.log"
        self._process = ManagedProcess(
            launch_command(self.config, port, nccl_port, gpu_slot=self.gpu_slot),
            name=f"engine-{self.index}",
            log_path=log_path,
            env=engine_env(self.config),
        )
        self._process.start()

    def wait_healthy(self, timeout_s: float | None = None) -> None:
        self.process.wait_http_ok(self.url, HEALTH_PATHS, timeout_s=timeout_s or self.config.startup_timeout_s)

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def stop(self) -> None:
        """Stop the engine and everything it spawned (no-op if not running)."""
        if self._process is not None:
            self._process.stop()

    def kill(self) -> None:
        """SIGKILL the engine's process group (tests use it to simulate a crash)."""
        self.process.kill()

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)
