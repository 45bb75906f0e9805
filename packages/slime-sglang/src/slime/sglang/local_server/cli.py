"""Command line of the local server: `python -m slime.sglang.local_server --model-path DIR [--port P] ...`.

Flag names follow SGLang's `launch_server` where one exists (`--model-path`, `--host`, `--port`, `--tp-size`,
`--max-running-requests`, `--max-prefill-tokens`, `--dtype`, `--random-seed`), so `EngineProcess` can start
either server with the same command line. `serve` loads the model before binding the port: once `/health`
answers, the server can generate. This module does not implement routes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from slime.sglang.local_server.config import LocalServerConfig

READY_LINE = "slime local server ready at"
"""Printed to stdout (and so to the engine log) once the port is bound."""
LISTEN_BACKLOG = 4096
"""Pending connections the socket queues (aiohttp's default is 128; uvicorn's, which SGLang uses, 2048). A router
fanning thousands of requests out at once would otherwise overflow it, and the dropped ones fail."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m slime.sglang.local_server", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--model-path", required=True, help="HF checkpoint folder (weights and tokenizer)")
    add("--host", default="127.0.0.1", help="bind address (loopback unless --allow-remote)")
    add("--port", type=int, default=30000)
    add("--tp-size", type=int, default=1, help="must be 1 (accepted for SGLang parity)")
    add("--max-running-requests", "--max-batch-size", dest="max_batch_size", type=int, default=256)
    add("--max-prefill-tokens", type=int, default=16384)
    add("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    add("--random-seed", type=int, default=0)
    add("--num-threads", type=int, default=1, help="torch CPU threads")
    add("--weight-version", default="default")
    add("--allow-remote", action="store_true", help="allow a non-loopback --host")
    add("--trusted-weight-peers", dest="trusted_peers", nargs="*", default=[],
        help="hosts besides loopback that may send disk/delta/broadcast weight payloads")  # fmt: skip
    add("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    add("--skip-server-warmup", action="store_true", help="accepted for SGLang parity; there is no warm-up")
    add("--enable-deterministic-inference", action="store_true",
        help="accepted for SGLang parity: requests with a sampling_seed are already reproducible here")  # fmt: skip
    return parser


def parse_config(argv: Sequence[str] | None = None) -> tuple[LocalServerConfig, str]:
    """The config and log level from a command line; a bad value exits with the ConfigError's message."""
    ns = build_parser().parse_args(argv)
    parity_only = ("log_level", "skip_server_warmup", "enable_deterministic_inference")
    fields = {k: v for k, v in vars(ns).items() if k not in parity_only}
    fields["trusted_peers"] = tuple(fields["trusted_peers"])
    return LocalServerConfig(**fields), ns.log_level


class _QuietHttp2Probes(logging.Filter):
    """sglang-router opens two HTTP/2 (gRPC) probes per registration; aiohttp answers 400 and would log a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (error is not None and "PRI" in str(error) and type(error).__name__ == "BadHttpMessage")


def serve(config: LocalServerConfig) -> None:
    """Load the model, start the scheduler and serve until SIGINT / SIGTERM."""
    import torch
    from aiohttp import web

    from slime.sglang.local_server.app import build_app
    from slime.sglang.local_server.model_runner import ModelRunner
    from slime.sglang.local_server.scheduler import Scheduler

    logging.getLogger("aiohttp.server").addFilter(_QuietHttp2Probes())
    torch.set_num_threads(config.num_threads)
    runner = ModelRunner(config.model_path, dtype=config.dtype)
    scheduler = Scheduler(
        runner,
        max_batch_size=config.max_batch_size,
        max_prefill_tokens=config.max_prefill_tokens,
        seed=config.random_seed,
        weight_version=config.weight_version,
    )
    scheduler.start()
    app = build_app(config, scheduler)

    async def announce(_: web.Application) -> None:
        print(f"{READY_LINE} http://{config.host}:{config.port}", flush=True)

    app.on_startup.append(announce)
    try:
        web.run_app(app, host=config.host, port=config.port, access_log=None, print=None, shutdown_timeout=5,
                    backlog=LISTEN_BACKLOG)  # fmt: skip
    finally:
        scheduler.stop()


def main(argv: Sequence[str] | None = None) -> None:
    try:
        config, log_level = parse_config(argv)
    except ValueError as exc:  # ConfigError: a clear message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    if not (Path(config.model_path) / "config.json").is_file():  # fail before the slow torch import
        print(
            f"error: --model-path {config.model_path!r} is not an HF checkpoint folder (no config.json)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(config)
