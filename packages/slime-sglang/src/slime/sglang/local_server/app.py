"""The local server's aiohttp application: SGLang's native HTTP protocol for the subset slime uses.

Routes: `/generate`, `/abort_request`, `/flush_cache`, `/health`, `/health_generate`, `/server_info`
(`/get_server_info`), `/model_info` (`/get_model_info`), `/get_load`, `/pause_generation`,
`/continue_generation`, `/release_memory_occupation`, `/resume_memory_occupation`, and the weight-update
routes of `slime.sglang.local_server.weights`. Request and response shapes follow sglang 0.5.17's
`http_server.py` / `io_struct.py`. This module holds no model logic; the `Scheduler` does the work.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from slime.sglang.local_server.config import LocalServerConfig
from slime.sglang.local_server.generation_request import GenerationRequest, RequestError, parse_generate_body
from slime.sglang.local_server.json_io import error_response, read_json
from slime.sglang.local_server.scheduler import Scheduler
from slime.sglang.local_server.weights import WeightUpdates

logger = logging.getLogger(__name__)
SERVER_KEY: web.AppKey[LocalServer] = web.AppKey("local_server")
HEALTH_GENERATE_TIMEOUT_S = 20.0
MEMORY_TAGS = ("weights", "kv_cache", "cuda_graph")


class LocalServer:
    """Route handlers bound to one scheduler."""

    def __init__(self, config: LocalServerConfig, scheduler: Scheduler) -> None:
        self.config = config
        self.scheduler = scheduler
        self.runner = scheduler.runner
        self.weights = WeightUpdates(config, scheduler)

    def routes(self) -> list[web.AbstractRouteDef]:
        get_post = ("GET", "POST")
        table = [
            ("POST", "/generate", self.generate),
            ("PUT", "/generate", self.generate),
            ("POST", "/abort_request", self.abort_request),
            *[(m, "/flush_cache", self.flush_cache) for m in get_post],
            ("GET", "/health", self.health),
            ("GET", "/health_generate", self.health_generate),
            ("GET", "/server_info", self.server_info),
            ("GET", "/get_server_info", self.server_info),
            ("GET", "/model_info", self.model_info),
            ("GET", "/get_model_info", self.model_info),
            ("GET", "/get_load", self.get_load),
            ("POST", "/pause_generation", self.pause_generation),
            ("POST", "/continue_generation", self.continue_generation),
            *[(m, "/release_memory_occupation", self.release_memory) for m in get_post],
            *[(m, "/resume_memory_occupation", self.resume_memory) for m in get_post],
        ]
        return [web.route(method, path, handler) for method, path, handler in table] + self.weights.routes()

    async def generate(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        try:
            gen = parse_generate_body(
                body,
                tokenizer=self.runner.tokenizer,
                eos_token_ids=self.runner.eos_token_ids,
                vocab_size=self.runner.vocab_size,
            )
        except RequestError as exc:
            return error_response(400, str(exc))
        return await self._run(gen)

    async def _run(self, gen: GenerationRequest) -> web.Response:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any] | None] = loop.create_future()

        def on_done(done: GenerationRequest) -> None:  # scheduler thread
            payload = None if done.error else done.response(self.runner.tokenizer, self.scheduler.weight_version)
            loop.call_soon_threadsafe(_resolve, future, payload)

        gen.on_done = on_done
        try:
            self.scheduler.submit(gen)
        except RequestError as exc:
            return error_response(400, str(exc))
        try:
            payload = await future
        except asyncio.CancelledError:  # the client went away: stop spending compute on it
            self.scheduler.abort(gen.rid, message="client disconnected")
            raise
        if payload is None:
            return error_response(500, gen.error or "generation failed")
        return web.json_response(payload)

    async def abort_request(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        self.scheduler.abort(str(body.get("rid") or ""), abort_all=bool(body.get("abort_all")))
        return web.Response(status=200)

    async def flush_cache(self, request: web.Request) -> web.Response:
        # No prefix cache survives a request here, so there is nothing to drop; SGLang answers 200 with this text.
        return web.Response(text="Cache flushed.\n")

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.scheduler.is_alive() else 503)

    async def health_generate(self, request: web.Request) -> web.Response:
        if not self.scheduler.is_alive():
            return web.Response(status=503)
        if self.scheduler.load()["num_running_reqs"] > 0:
            return web.Response(status=200)  # busy means healthy, as in SGLang
        probe = parse_generate_body(
            {"input_ids": [0], "sampling_params": {"max_new_tokens": 1, "temperature": 0.0}},
            tokenizer=self.runner.tokenizer,
            eos_token_ids=frozenset(),
            vocab_size=self.runner.vocab_size,
        )
        try:
            response = await asyncio.wait_for(self._run(probe), HEALTH_GENERATE_TIMEOUT_S)
        except TimeoutError:
            self.scheduler.abort(probe.rid)
            return web.Response(status=503)
        return web.Response(status=200 if response.status == 200 else 503)

    async def server_info(self, request: web.Request) -> web.Response:
        config = self.config
        return web.json_response(
            {
                "model_path": config.model_path,
                "tokenizer_path": config.model_path,
                "host": config.host,
                "port": config.port,
                "tp_size": 1,
                "dp_size": 1,
                "pp_size": 1,
                "load_balance_method": "round_robin",
                "disaggregation_mode": "null",
                "max_running_requests": config.max_batch_size,
                "max_prefill_tokens": config.max_prefill_tokens,
                "random_seed": config.random_seed,
                "dtype": config.dtype,
                "weight_version": self.scheduler.weight_version,
                "internal_states": [self.scheduler.load()],
                "memory_released_tags": sorted(t.split(":", 1)[1] for t in self.scheduler.hold_reasons if ":" in t),
                "generation_paused": "pause_generation" in self.scheduler.hold_reasons,
                "backend": "slime.sglang.local_server",
                "version": "slime-local",
            }
        )

    async def model_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_path": self.config.model_path,
                "tokenizer_path": self.config.model_path,
                "is_generation": True,
                "preferred_sampling_params": None,
                "weight_version": self.scheduler.weight_version,
                "has_image_understanding": False,
                "has_audio_understanding": False,
                **self.runner.model_info(),
            }
        )

    async def get_load(self, request: web.Request) -> web.Response:
        load = self.scheduler.load()
        return web.json_response(
            [
                {
                    "dp_rank": 0,
                    "num_reqs": load["num_running_reqs"] + load["num_waiting_reqs"],
                    "num_waiting_reqs": load["num_waiting_reqs"],
                }
            ]
        )

    async def pause_generation(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        mode = body.get("mode", "abort")
        if mode not in ("abort", "retract", "in_place"):
            return error_response(400, f"mode must be abort, retract or in_place (got {mode!r})")
        if mode == "abort":
            self.scheduler.abort(abort_all=True, message="Abort by pause_generation")
        self.scheduler.set_hold("pause_generation", True)
        return web.json_response({"message": "Generation paused successfully.", "status": "ok"})

    async def continue_generation(self, request: web.Request) -> web.Response:
        self.scheduler.set_hold("pause_generation", False)
        return web.json_response({"message": "Generation continued successfully.", "status": "ok"})

    async def release_memory(self, request: web.Request) -> web.Response:
        return await self._memory(request, release=True)

    async def resume_memory(self, request: web.Request) -> web.Response:
        return await self._memory(request, release=False)

    async def _memory(self, request: web.Request, *, release: bool) -> web.Response:
        # On CPU there is no device memory to hand back: releasing holds generation (as a released SGLang engine
        # cannot generate) until every released tag is resumed. Weight updates still work while released.
        tags = (await read_json(request)).get("tags") or list(MEMORY_TAGS)
        unknown = sorted(set(tags) - set(MEMORY_TAGS))
        if unknown:
            return error_response(400, f"unknown memory tags {unknown}; use {list(MEMORY_TAGS)}")
        for tag in tags:
            self.scheduler.set_hold(f"released:{tag}", release)
        return web.Response(status=200)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def build_app(config: LocalServerConfig, scheduler: Scheduler) -> web.Application:
    """The aiohttp application serving `scheduler` (which must already be started)."""
    app = web.Application(client_max_size=1 << 30)
    server = LocalServer(config, scheduler)
    app[SERVER_KEY] = server
    app.add_routes(server.routes())
    return app
