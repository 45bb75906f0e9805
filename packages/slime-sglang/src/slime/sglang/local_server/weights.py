"""Weight-update routes of the local server, receiving through `slime.sync` receivers.

Which `slime.sync` transport each SGLang route takes (payloads are `{"format": "slime.sync/1", "transport": ...}`):

- `/update_weights_from_disk`: `disk` and `delta` payloads, or SGLang's native `{"model_path": <HF folder>}`.
- `/update_weights_from_tensor`: `shm` payloads (shared-memory handles; the receiver accepts loopback peers
  only). SGLang's pickled `serialized_named_tensors` are refused: nothing is ever unpickled here.
- `/init_weights_update_group`, `/update_weights_from_distributed`, `/destroy_weights_update_group`:
  `broadcast` payloads (`op` init / update / destroy). The init body also carries SGLang's `rank_offset`,
  this engine's rank in the group.
- `/update_weight_version`: SGLang's `{"new_version"}`.

Receivers are created on first use. Every apply runs on the scheduler thread between two model steps, so no
step sees half-loaded weights. `weight_version` (a string, as in SGLang) becomes the body's `weight_version`
if given, else the slime.sync version. Answers are SGLang's `{"success", "message"}` with 200 or 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from slime.sglang.local_server.config import LocalServerConfig
from slime.sglang.local_server.json_io import read_json
from slime.sglang.local_server.scheduler import Scheduler
from slime.sync import FORMAT, BroadcastReceiver, DeltaReceiver, DiskReceiver, SharedMemoryReceiver, VersionedReceiver
from slime.types import SlimeError

ROUTE_TRANSPORTS: Mapping[str, tuple[str, ...]] = {
    "/update_weights_from_disk": ("disk", "delta"),
    "/update_weights_from_tensor": ("shm",),
    "/init_weights_update_group": ("broadcast",),
    "/update_weights_from_distributed": ("broadcast",),
    "/destroy_weights_update_group": ("broadcast",),
}
NATIVE_REFUSED = (
    "the local server takes slime.sync payloads on {path} (transports {transports}); of SGLang's native bodies "
    'only /update_weights_from_disk\'s {{"model_path": ...}} is served, and pickled tensors are never unpickled'
)


class WeightUpdates:
    """One lazily created `slime.sync` receiver per transport, all loading into the scheduler's model."""

    def __init__(self, config: LocalServerConfig, scheduler: Scheduler) -> None:
        self.config = config
        self.scheduler = scheduler
        self.receivers: dict[str, VersionedReceiver] = {}
        self._broadcast_rank: int | None = None

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post(path, self.update) for path in ROUTE_TRANSPORTS] + [
            web.post("/update_weight_version", self.update_weight_version)
        ]

    async def update(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        transports = ROUTE_TRANSPORTS[request.path]
        if body.get("format") == FORMAT:
            return await self._apply(request, body, transports)
        if request.path == "/update_weights_from_disk" and isinstance(body.get("model_path"), str):
            return await self._load_hf_folder(body)
        return _result(False, NATIVE_REFUSED.format(path=request.path, transports=list(transports)))

    async def update_weight_version(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        version = body.get("new_version")
        if not isinstance(version, str | int) or isinstance(version, bool):
            return _result(False, 'send {"new_version": <string>}')
        if body.get("abort_all_requests", True):
            self.scheduler.abort(abort_all=True, message="Abort by update_weight_version")
        self.scheduler.weight_version = str(version)
        message = f"Weight version updated to {version}"
        return web.json_response({"success": True, "message": message, "new_version": str(version)})

    async def _load_hf_folder(self, body: Mapping[str, Any]) -> web.Response:
        model_path = str(body["model_path"])

        def load() -> str:
            return f"loaded {self.scheduler.runner.load_from_disk(model_path)} tensors from {model_path}"

        return await self._on_scheduler(body, load)

    async def _apply(
        self, request: web.Request, payload: Mapping[str, Any], transports: tuple[str, ...]
    ) -> web.Response:
        transport = str(payload.get("transport"))
        if transport not in transports:
            return _result(False, f"transport {transport!r} is not accepted on {request.path} (expected {transports})")
        try:
            receiver = self._receiver(transport, payload)
        except (SlimeError, ValueError) as exc:
            return _result(False, str(exc))
        peer = request.remote

        def apply() -> str:
            version = receiver.apply(payload, peer=peer)
            if payload.get("op", "update") == "update" and "weight_version" not in payload:
                self.scheduler.weight_version = str(version)
            return f"{transport} {payload.get('op', 'update')} done; weight version {version}"

        return await self._on_scheduler(payload, apply)

    def _receiver(self, transport: str, payload: Mapping[str, Any]) -> VersionedReceiver:
        load, trusted = self.scheduler.runner.load_weights, self.config.trusted_peers
        if transport == "broadcast" and payload.get("op") == "init":
            rank = payload.get("rank_offset")
            if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
                raise ValueError(f"broadcast init needs this engine's `rank_offset` (an int >= 1), got {rank!r}")
            if "broadcast" not in self.receivers or self._broadcast_rank != rank:
                self.receivers["broadcast"] = BroadcastReceiver(load, rank=rank, trusted_peers=trusted)
                self._broadcast_rank = rank
        if transport not in self.receivers:
            factories: dict[str, Callable[[], VersionedReceiver]] = {
                "disk": lambda: DiskReceiver(load, trusted_peers=trusted),
                "delta": lambda: DeltaReceiver(load, trusted_peers=trusted),
                "shm": lambda: SharedMemoryReceiver(load),
            }
            if transport not in factories:
                raise ValueError(f"no {transport} receiver yet: send the broadcast `init` payload first")
            self.receivers[transport] = factories[transport]()
        return self.receivers[transport]

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
    body = {"success": success, "message": message, "num_paused_requests": 0}
    return web.json_response(body, status=200 if success else 400)
