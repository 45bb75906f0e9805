"""Weight-update routes of the local server, receiving through `slime.sync`.

- `/update_weights_from_disk`: a `slime.sync` disk payload (`{"format": "slime.sync/1", "transport": "disk",
  ...}`), or SGLang's native body `{"model_path": <HF folder>}` read directly.
- `/update_weights_from_tensor`: a `slime.sync` shared-memory payload (loopback peers only, enforced by the
  receiver). SGLang's native pickled `serialized_named_tensors` is refused: nothing is ever unpickled here.
- `/update_weight_version`: SGLang's `{"new_version"}`.

Every load runs on the scheduler thread between two model steps, so no step ever sees half-loaded weights.
`weight_version` (a string, as in SGLang) becomes the payload's `weight_version` field if present, else the
slime.sync version number. Answers are SGLang's `{"success", "message"}` with 200 or 400. This module does
not sample or schedule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from slime.sglang.local_server.config import LocalServerConfig
from slime.sglang.local_server.json_io import read_json
from slime.sglang.local_server.scheduler import Scheduler
from slime.sync import FORMAT, DiskReceiver, SharedMemoryReceiver, VersionedReceiver
from slime.types import SlimeError


class WeightUpdates:
    """Owns one `slime.sync` receiver per transport, all loading into the scheduler's model."""

    def __init__(self, config: LocalServerConfig, scheduler: Scheduler) -> None:
        self.config = config
        self.scheduler = scheduler
        load = scheduler.runner.load_weights
        self.receivers: dict[str, VersionedReceiver] = {
            "disk": DiskReceiver(load),
            "shm": SharedMemoryReceiver(load),
        }

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.post("/update_weights_from_disk", self.update_from_disk),
            web.post("/update_weights_from_tensor", self.update_from_tensor),
            web.post("/update_weight_version", self.update_weight_version),
        ]

    async def update_from_disk(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if body.get("format") == FORMAT:
            return await self._apply(request, body, allowed=("disk",))
        model_path = body.get("model_path")
        if not isinstance(model_path, str) or not model_path:
            return _result(False, 'send a slime.sync disk payload or SGLang\'s {"model_path": <HF folder>}')

        def load() -> str:
            count = self.scheduler.runner.load_from_disk(model_path)
            return f"loaded {count} tensors from {model_path}"

        return await self._on_scheduler(body, load)

    async def update_from_tensor(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if body.get("format") != FORMAT:
            return _result(
                False,
                "the local server takes slime.sync shared-memory payloads on this route; SGLang's pickled "
                "`serialized_named_tensors` are never unpickled here",
            )
        return await self._apply(request, body, allowed=("shm",))

    async def update_weight_version(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        version = body.get("new_version")
        if not isinstance(version, str | int) or isinstance(version, bool):
            return _result(False, 'send {"new_version": <string>}')
        if body.get("abort_all_requests", True):
            self.scheduler.abort(abort_all=True, message="Abort by update_weight_version")
        self.scheduler.weight_version = str(version)
        return web.json_response(
            {"success": True, "message": f"Weight version updated to {version}", "new_version": str(version)}
        )

    async def _apply(
        self, request: web.Request, payload: Mapping[str, Any], *, allowed: tuple[str, ...]
    ) -> web.Response:
        transport = payload.get("transport")
        if transport not in allowed or transport not in self.receivers:
            return _result(False, f"transport {transport!r} is not accepted on {request.path} (expected {allowed})")
        receiver, peer = self.receivers[str(transport)], request.remote

        def apply() -> str:
            version = receiver.apply(payload, peer=peer)
            if "weight_version" not in payload:
                self.scheduler.weight_version = str(version)
            return f"applied {transport} weights, version {version}"

        return await self._on_scheduler(payload, apply)

    async def _on_scheduler(self, body: Mapping[str, Any], fn: Callable[[], str]) -> web.Response:
        if body.get("abort_all_requests"):
            self.scheduler.abort(abort_all=True, message="Abort by weight update")

        def run() -> str:
            message = fn()
            if isinstance(body.get("weight_version"), str | int):
                self.scheduler.weight_version = str(body["weight_version"])
            return message

        try:
            message = await asyncio.wrap_future(self.scheduler.call(run))
        except (SlimeError, OSError, ValueError) as exc:
            return _result(False, str(exc))
        return _result(True, message)


def _result(success: bool, message: str) -> web.Response:
    return web.json_response(
        {"success": success, "message": message, "num_paused_requests": 0}, status=200 if success else 400
    )
