"""A CPU stand-in for one SGLang engine's weight-update surface, running SGLang 0.5.17's REAL receiving code.

Run as `python sglang_weight_server.py SOURCE PORT_FILE`: it loads SGLang's own pieces (`real_sglang.install`),
starts a world-1 gloo default group (SGLang's TP group; `init_weights_update_group` asserts one exists), and
serves SGLang's routes over HTTP. Each body is checked against the route's request class in SGLang's
`io_struct.py` (no unknown field, every required one), then handled as SGLang's scheduler does, on one thread:
`WeightUpdater.init_weights_update_group` / `update_weights_from_distributed` / `update_weights_from_tensor` /
`destroy_weights_update_group` (SGLang's code), the tensor path deserializing this rank's entry with SGLang's
`normalize_serialized_named_tensor_payloads` + `monkey_patch_torch_reductions` + `MultiprocessingSerializer`
(as `TpModelWorker._deserialize_own_rank`). Not SGLang: the HTTP layer (aiohttp), the model (it records each
loaded tensor's name, dtype, shape and sha256), pause/continue/flush (recorded). `GET /state` reports them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import hashlib
import json
import socket
import sys
import types
from pathlib import Path
from typing import Any

import real_sglang
import torch
import torch.distributed as dist
from aiohttp import web

REQUESTS = {
    "/init_weights_update_group": "InitWeightsUpdateGroupReqInput",
    "/update_weights_from_distributed": "UpdateWeightsFromDistributedReqInput",
    "/update_weights_from_tensor": "UpdateWeightsFromTensorReqInput",
    "/destroy_weights_update_group": "DestroyWeightsUpdateGroupReqInput",
    "/pause_generation": "PauseGenerationReqInput",
    "/continue_generation": "ContinueGenerationReqInput",
}
TP_RANK = 0


class RecordingModel:
    """The engine's model: `load_weights` records what it got (bit-exact, by sha256 of the bytes)."""

    def __init__(self) -> None:
        self.loads: list[list[Any]] = []

    def load_weights(self, named_tensors: list[tuple[str, torch.Tensor]]) -> None:
        for name, tensor in named_tensors:
            raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            self.loads.append([name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape),
                               hashlib.sha256(raw).hexdigest()])  # fmt: skip


class Engine:
    def __init__(self, root: Path) -> None:
        self.root, self.real = root, real_sglang.install(root)
        self.model = RecordingModel()
        runner = types.SimpleNamespace(server_args=types.SimpleNamespace(weight_cache_mode="off"))
        self.updater = self.real["WeightUpdater"](
            tp_rank=TP_RANK, device="cpu", gpu_id=0, model_config=None, custom_weight_loaders={},
            get_model=lambda: self.model, update_model_fields=lambda *a, **k: None,
            recapture_cuda_graph=lambda: None, get_model_runner=lambda: runner,
        )  # fmt: skip
        self.calls: list[str] = []
        self.weight_version = "default"
        self.scheduler = concurrent.futures.ThreadPoolExecutor(1)  # SGLang applies updates on one thread

    def handle(self, route: str, body: dict[str, Any]) -> tuple[bool, str]:
        self.calls.append(route)
        u = self.updater
        if route == "/init_weights_update_group":
            return u.init_weights_update_group(body["master_address"], body["master_port"], body["rank_offset"],
                                               body["world_size"], body["group_name"],
                                               body.get("backend", "nccl"))  # fmt: skip
        if route == "/update_weights_from_distributed":
            return u.update_weights_from_distributed(body["names"], body["dtypes"], body["shapes"],
                                                     body.get("group_name", "weight_update_group"),
                                                     body.get("load_format"))  # fmt: skip
        if route == "/update_weights_from_tensor":
            common = self.real["common"]
            self.real["patch_torch"].monkey_patch_torch_reductions()
            payloads = common.normalize_serialized_named_tensor_payloads(body["serialized_named_tensors"])
            named = common.MultiprocessingSerializer.deserialize(payloads[TP_RANK])
            ok, message = u.update_weights_from_tensor(named_tensors=named, load_format=body.get("load_format"))
            del named  # drop the rebuilt views now (the shared memory's reference goes back)
            return ok, message
        if route == "/destroy_weights_update_group":
            return u.destroy_weights_update_group(body.get("group_name", "weight_update_group"))
        return True, "recorded"

    def check(self, route: str, body: Any) -> str | None:
        fields = real_sglang.io_struct_fields(self.root, REQUESTS[route])
        if not isinstance(body, dict):
            return "body must be a JSON object"
        unknown = sorted(set(body) - set(fields))
        missing = sorted(f.name for f in fields.values() if f.required and f.name not in body)
        return f"unknown fields {unknown}, missing {missing}" if unknown or missing else None

    async def route(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        problem = self.check(request.path, body)
        if problem:
            return web.json_response({"success": False, "message": problem}, status=422)
        loop = asyncio.get_running_loop()
        try:
            ok, message = await loop.run_in_executor(self.scheduler, self.handle, request.path, body)
        except Exception as exc:  # an assertion inside SGLang's code: SGLang answers 400 with the message
            ok, message = False, f"{type(exc).__name__}: {exc}"
        if ok and isinstance(body.get("weight_version"), str):
            self.weight_version = body["weight_version"]
        return web.json_response({"success": ok, "message": message}, status=200 if ok else 400)

    async def flush(self, request: web.Request) -> web.Response:
        self.calls.append("/flush_cache")
        return web.Response(text="Cache flushed.\n")

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"calls": self.calls, "loads": self.model.loads, "weight_version": self.weight_version}
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main(root: Path, port_file: Path) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=60))  # fmt: skip
    engine = Engine(root)
    app = web.Application()
    app.add_routes([web.post(path, engine.route) for path in REQUESTS])
    app.add_routes([web.post("/flush_cache", engine.flush), web.get("/state", engine.state)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    port_file.write_text(json.dumps({"port": port}))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
