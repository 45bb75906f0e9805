"""slime.sync payloads -> stock SGLang's weight-update calls, checked against SGLang 0.5.17's own receiving code.

The end-to-end tests run a subprocess (`sglang_weight_server.py`) serving SGLang's routes with SGLang's real
`WeightUpdater`, `init_custom_process_group`, `MultiprocessingSerializer` / `SafeUnpickler` and
`FlattenedTensorBucket` on CPU; our `EngineClient(backend="sglang")` drives it from slime.sync's real senders,
and every tensor SGLang loads must match the trainer's bit for bit. They are skipped where SGLang's source
cannot be found (see `real_sglang.find_source`). What only a GPU can show (CUDA IPC rebuild, NCCL, a real
model's generation) is `ci/gpu/sglang/weight_sync_test.py`.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import importlib.util
import json
import pickle
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from slime.sglang import EngineClient
from slime.sglang.flattened_bucket import serialize_bucket
from slime.sglang.native_weights import native_calls
from slime.sync import BroadcastSender, SharedMemorySender
from slime.sync.buckets import TensorSpec, plan_buckets
from slime.sync.ipc import _CUDA_PARAMS
from slime.types import ConfigError, ContractError, WeightSyncError

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("real_sglang", HERE / "real_sglang.py")
assert _spec is not None and _spec.loader is not None
real_sglang = sys.modules["real_sglang"] = importlib.util.module_from_spec(_spec)  # the tests folder is no package
_spec.loader.exec_module(real_sglang)

SOURCE = real_sglang.find_source()
needs_sglang = pytest.mark.skipif(SOURCE is None, reason="SGLang 0.5.17 source not found (see real_sglang.py)")


def weights(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "model.embed_tokens.weight": torch.randn(11, 6, generator=g).to(torch.bfloat16),
        "model.layers.0.mlp.up_proj.weight": torch.randn(5, 6, generator=g).to(torch.bfloat16),
        "model.norm.weight": torch.randn(6, generator=g),
        "model.layers.0.self_attn.q_norm.weight": torch.randn(2, 2, 2, generator=g).to(torch.float16),
        "model.step": torch.randint(-(2**40), 2**40, (3,), generator=g),
        "model.empty": torch.empty(0, 3, dtype=torch.bfloat16),
        "model.scale": torch.randn((), generator=g),
    }


def fingerprint(tensors: dict[str, torch.Tensor]) -> list[list[Any]]:
    rows = []
    for name, t in tensors.items():
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        rows.append([name, str(t.dtype).removeprefix("torch."), list(t.shape), hashlib.sha256(raw).hexdigest()])
    return sorted(rows)


def deliver_to(url: str, tp_size: int = 1) -> Any:
    def deliver(payload: dict[str, Any]) -> Any:
        async def go() -> Any:
            async with EngineClient(url, worker_urls=[url], backend="sglang", tp_size=tp_size) as client:
                return await client.deliver_weights(payload)

        return asyncio.run(go())

    return deliver


@pytest.fixture(scope="module")
def sglang_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port_file = tmp_path_factory.mktemp("sglang") / "port.json"
    log = port_file.with_suffix(".log").open("w")
    proc = subprocess.Popen([sys.executable, str(HERE / "sglang_weight_server.py"), str(SOURCE), str(port_file)],
                            cwd=HERE, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 180
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the SGLang stand-in did not start: {port_file.with_suffix('.log').read_text()[-3000:]}")
        time.sleep(0.2)
    time.sleep(0.1)
    yield f"http://127.0.0.1:{json.loads(port_file.read_text())['port']}"
    proc.kill()
    proc.wait()
    log.close()


def state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/state", timeout=30) as answer:
        return json.loads(answer.read())


@needs_sglang
def test_tensor_path_is_loaded_bit_exact_by_sglang(sglang_engine: str) -> None:
    before = state(sglang_engine)
    sender = SharedMemorySender(deliver_to(sglang_engine), bucket_bytes=128)  # several buckets, mixed dtypes
    for version, seed in ((1, 0), (2, 1)):  # v2 refills the same shared buffers: the refcount must balance
        start = len(state(sglang_engine)["loads"])
        expected = weights(seed)
        sender.publish(expected.items(), version)
        now = state(sglang_engine)
        assert sorted(now["loads"][start:]) == fingerprint(expected)
        assert now["weight_version"] == str(version)
    sender.close()
    num_buckets = len(plan_buckets([TensorSpec.of(n, t) for n, t in weights(0).items()], 128))
    publish = ["/pause_generation", "/flush_cache"] + ["/update_weights_from_tensor"] * num_buckets
    assert now["calls"][len(before["calls"]) :] == (publish + ["/continue_generation"]) * 2


@needs_sglang
@pytest.mark.parametrize("layout", ["tensors", "flattened"])
def test_broadcast_path_is_received_by_sglang_group(sglang_engine: str, layout: str) -> None:
    before = state(sglang_engine)
    sender = BroadcastSender(deliver_to(sglang_engine), world_size=2, backend="gloo", bucket_bytes=128,
                             timeout_s=60, layout=layout)  # fmt: skip
    expected = weights(7)
    sender.publish(expected.items(), 3)
    now = state(sglang_engine)
    assert sorted(now["loads"][len(before["loads"]) :]) == fingerprint(expected)
    assert now["weight_version"] == "3"
    sender.close()
    num_buckets = len(plan_buckets([TensorSpec.of(n, t) for n, t in expected.items()], 128))
    assert state(sglang_engine)["calls"][len(before["calls"]) :] == [
        "/init_weights_update_group", "/pause_generation", "/flush_cache",
        *["/update_weights_from_distributed"] * num_buckets, "/continue_generation", "/destroy_weights_update_group",
    ]  # fmt: skip


def _shm_payload(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    payloads: list[dict[str, Any]] = []
    sender = SharedMemorySender(payloads.append, bucket_bytes=1 << 20)
    sender.publish(tensors.items(), 5)
    payloads[0]["_keep"] = sender  # the buffers live as long as the sender
    return payloads[0]


def _fake_cuda_handle() -> dict[str, Any]:
    def b(raw: bytes) -> dict[str, str]:
        return {"bytes": base64.b64encode(raw).decode()}

    fields = {"tensor_cls": {"class": "torch.Tensor"}, "tensor_size": {"tuple": [96]}, "tensor_stride": {"tuple": [1]},
              "tensor_offset": 0, "storage_cls": {"class": "torch.storage.TypedStorage"}, "dtype": {"dtype": "uint8"},
              "storage_device": 3, "storage_handle": b(b"\x01ipc"), "storage_size_bytes": 2097152,
              "storage_offset_bytes": 512, "requires_grad": False, "ref_counter_handle": b(b"/torch_ref"),
              "ref_counter_offset": 8, "event_handle": b(b"\x02evt"), "event_sync_required": True}  # fmt: skip
    return {"kind": "cuda_ipc", "fields": fields, "device_uuid": "GPU-0f1e"}


class _Recorder(pickle.Unpickler):
    """Unpickles our body without running torch's rebuilds: records every global and every rebuild call."""

    def __init__(self, data: bytes) -> None:
        super().__init__(__import__("io").BytesIO(data))
        self.globals: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> Any:
        self.globals.append((module, name))
        if module.startswith("torch.multiprocessing") or module.startswith("sglang"):
            return lambda *args: (name, args)
        return super().find_class(module, name)


def _allowed_prefixes() -> set[str]:
    tree = ast.parse((SOURCE / "sglang" / "srt" / "utils" / "common.py").read_text())  # type: ignore[operator]
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SafeUnpickler")
    assign = next(n for n in cls.body if isinstance(n, ast.Assign) and n.targets[0].id == "ALLOWED_MODULE_PREFIXES")  # type: ignore[attr-defined]
    return set(ast.literal_eval(assign.value))


def test_cuda_handle_becomes_sglangs_rebuild_call_with_the_device_uuid() -> None:
    manifest = plan_buckets([TensorSpec("a", (4, 8), "bfloat16"), TensorSpec("b", (3,), "bfloat16")], 1 << 20)[0]
    (blob,) = serialize_bucket(manifest, _fake_cuda_handle())
    recorder = _Recorder(base64.b64decode(blob))
    body = recorder.load()
    name, args = body["flattened_tensor"]
    assert name == "rebuild_cuda_tensor" and len(args) == len(_CUDA_PARAMS)
    got = dict(zip(_CUDA_PARAMS, args, strict=True))
    assert got["storage_device"] == "GPU-0f1e"  # SGLang's patched rebuild maps a UUID to its local index
    assert got["tensor_cls"] is torch.Tensor and got["storage_cls"] is torch.storage.TypedStorage
    assert got["dtype"] is torch.uint8 and got["tensor_size"] == torch.Size([96])
    assert (got["storage_handle"], got["storage_offset_bytes"], got["ref_counter_offset"]) == (b"\x01ipc", 512, 8)
    assert (got["event_handle"], got["event_sync_required"], got["requires_grad"]) == (b"\x02evt", True, False)
    metas = [m[1] for m in body["metadata"]]
    # (name, shape, dtype, start_idx, end_idx, numel): byte offsets, `b` at the next 64-byte boundary
    assert metas == [("a", torch.Size([4, 8]), torch.bfloat16, 0, 64, 64), ("b", torch.Size([3]), torch.bfloat16,
                                                                            64, 70, 6)]  # fmt: skip
    if SOURCE is not None:
        prefixes = _allowed_prefixes()
        assert all(any((m + ".").startswith(p) for p in prefixes) for m, _ in recorder.globals), recorder.globals


def test_one_cuda_handle_cannot_serve_several_tp_ranks() -> None:
    manifest = plan_buckets([TensorSpec("a", (4,), "float32")], 1 << 20)[0]
    with pytest.raises(ContractError, match="tp_size=2 needs one CUDA IPC handle per TP rank"):
        serialize_bucket(manifest, _fake_cuda_handle(), num_copies=2)
    with pytest.raises(WeightSyncError, match="kind 'nfs'"):
        serialize_bucket(manifest, {"kind": "nfs"})


def test_broadcast_init_gives_each_tp_rank_its_place() -> None:
    init = {"transport": "broadcast", "op": "init", "version": 0, "group": "g", "master_addr": "10.0.0.1",
            "master_port": 29500, "world_size": 5, "backend": "nccl"}  # fmt: skip
    (call,) = native_calls(init, num_workers=2, tp_size=2)
    assert call.route == "/init_weights_update_group"
    assert [call.body(i, "u")["rank_offset"] for i in range(2)] == [1, 3]  # type: ignore[operator]
    assert call.body(0, "u") == {"master_address": "10.0.0.1", "master_port": 29500, "world_size": 5,  # type: ignore[operator]
                                 "group_name": "g", "backend": "nccl", "rank_offset": 1}  # fmt: skip
    with pytest.raises(ConfigError, match="world_size=5"):
        native_calls({**init, "world_size": 3}, num_workers=2, tp_size=2)


def test_untranslatable_payloads_name_the_fix() -> None:
    with pytest.raises(WeightSyncError, match="patched SGLang"):
        native_calls({"transport": "delta", "version": 1}, num_workers=1)
    update = {"transport": "broadcast", "op": "update", "version": 1, "group": "g", "buckets": [], "num_buckets": 0}
    with pytest.raises(ConfigError, match="layout='tensors'"):
        native_calls(update, num_workers=1)
    with pytest.raises(WeightSyncError, match="group"):
        native_calls({**update, "group": ""}, num_workers=1)


def test_bodies_carry_exactly_sglangs_fields() -> None:
    tensors = weights(3)
    shm = native_calls(_shm_payload(tensors), num_workers=1)
    disk = native_calls({"transport": "disk", "version": 4, "path": "/ckpt/weight_v000004"}, num_workers=1)
    assert disk[0].body == {"model_path": "/ckpt/weight_v000004", "weight_version": "4", "flush_cache": False}
    assert shm[0].body["load_format"] == "flattened_bucket" and shm[0].body["weight_version"] == "5"  # type: ignore[index]
    if SOURCE is None:
        pytest.skip("SGLang 0.5.17 source not found: field names not compared")
    for calls, cls in ((shm, "UpdateWeightsFromTensorReqInput"), (disk, "UpdateWeightFromDiskReqInput")):
        fields = real_sglang.io_struct_fields(SOURCE, cls)
        body = calls[0].body
        assert set(body) <= set(fields) and {f.name for f in fields.values() if f.required} <= set(body)  # type: ignore[arg-type]


@needs_sglang
def test_sglang_reads_the_health_variable_slime_sets() -> None:
    """`engine_env` turns SGLang's generating `/health` off; this pins the variable's name and meaning in 0.5.17."""
    from slime.sglang.engine_process import SGLANG_DEFAULT_ENV

    ((name, _),) = SGLANG_DEFAULT_ENV
    assert f"{name} = EnvBool(True)" in (SOURCE / "sglang/srt/environ.py").read_text()
    server = (SOURCE / "sglang/srt/entrypoints/http_server.py").read_text()
    assert f"not envs.{name}.get()" in server and 'request.url.path == "/health"' in server


@needs_sglang
def test_sglang_turns_nccl_cumem_off_unless_set() -> None:
    """Why slime.train sets NCCL_CUMEM_ENABLE for engines in an NCCL weight group: SGLang 0.5.17 writes 0 into its
    own environment unless the variable is already there."""
    from slime.sglang.engine_process import NCCL_CUMEM_ENV

    engine = (SOURCE / "sglang/srt/entrypoints/engine.py").read_text()
    name = NCCL_CUMEM_ENV[0]
    assert f'if "{name}" not in os.environ or server_args.enable_symm_mem:' in engine
    assert f'os.environ["{name}"] = str(int(server_args.enable_symm_mem))' in engine
