"""GPU recipe (issue #6): slime.sync -> stock SGLang 0.5.17 through SGLang's own weight-update routes.

Runs ON THE DEVICE after `device.sh stage1..stage3` (see README.md): one `sglang.launch_server` engine (through
slime's `EngineGroup`, router included) on GPU `--engine-gpu`; this process plays the trainer, holding the
HF weights of `--model-path` on a GPU. Each step publishes with a real slime.sync sender whose `deliver` is
`EngineClient(backend="sglang").deliver_weights`, then greedy-generates a fixed prompt (ids + log-probs):

1. baseline (the weights the engine started with, version "default");
2. colocated tensor path (CUDA IPC, `/update_weights_from_tensor`, flattened buckets): W' = W + noise, v1
   -> the generation must change;
3. the same path with W again, v2 -> must equal the baseline exactly (ids and log-probs);
4. disk (`/update_weights_from_disk` of a DiskSender folder) with W', v3 -> must equal step 2 (the tensor path
   loaded exactly W');
5. broadcast (`/init_weights_update_group` + `/update_weights_from_distributed`), layout `tensors`, W, v4
   -> baseline; 6. layout `flattened` (`load_format=flattened_bucket`), W', v5 -> step 2.
   `--broadcast-backend gloo` (default; one GPU: trainer tensors on the CPU, SGLang receives on its GPU) or
   `nccl` (needs `--engine-gpu 1` on a 2-GPU machine: NCCL refuses two ranks on one device).

Every step also checks the engine's `weight_version` in `meta_info`. Prints one JSON line and writes it to
`$OUT/weight_sync.json`; exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from slime.sglang import EngineClient, EngineConfig
from slime.sglang.engine_group import EngineGroup, EngineGroupConfig
from slime.sync import BroadcastSender, DiskSender, SharedMemorySender

PROMPT = [11, 22, 33, 44, 55, 66, 77, 88, 99, 111, 222, 333]


def deliver_to(url: str) -> Any:
    def deliver(payload: dict[str, Any]) -> Any:
        async def go() -> Any:
            async with EngineClient(url, worker_urls=[url], backend="sglang") as client:
                return await client.deliver_weights(payload)

        return asyncio.run(go())

    return deliver


def generate(url: str) -> dict[str, Any]:
    async def go() -> Any:
        async with EngineClient(url, worker_urls=[url], backend="sglang") as client:
            return await client.generate(PROMPT, {"max_new_tokens": 24, "temperature": 0.0})

    out = asyncio.run(go())
    return {"ids": list(out.output_ids), "logprobs": list(out.output_log_probs), "version": out.weight_version}


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    close = all(abs(x - y) <= 1e-4 for x, y in zip(a["logprobs"], b["logprobs"], strict=True))
    return a["ids"] == b["ids"] and close


def load_weights(model_path: str, device: str) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(Path(model_path).glob("*.safetensors")):
        tensors.update(load_file(str(shard), device=device))
    return tensors


def perturbed(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(1234)
    out = {}
    for name, t in weights.items():
        noise = torch.randn(t.shape, generator=g, dtype=torch.float32).to(t.device)
        out[name] = (t.float() + 0.05 * noise).to(t.dtype) if t.is_floating_point() else t.clone()
    return out


def run_steps(url: str, args: argparse.Namespace, checks: dict[str, bool], figures: dict[str, Any]) -> None:
    gpu = f"cuda:{args.engine_gpu}"
    w = load_weights(args.model_path, gpu)
    w2 = perturbed(w)
    base = generate(url)
    shm = SharedMemorySender(deliver_to(url), bucket_bytes=args.bucket_mib << 20)
    figures["tensor_v1"] = shm.publish(w2.items(), 1)
    g1 = generate(url)
    checks["tensor_changes_generation"] = not same(g1, base) and g1["version"] == "1"
    figures["tensor_v2"] = shm.publish(w.items(), 2)
    checks["tensor_restores_baseline"] = same(generate(url), base)
    shm.close()
    disk = DiskSender(deliver_to(url), args.disk_dir, bucket_bytes=args.bucket_mib << 20)
    figures["disk_v3"] = disk.publish(w2.items(), 3)
    g3 = generate(url)
    checks["disk_matches_tensor_path"] = same(g3, g1) and g3["version"] == "3"
    nccl = args.broadcast_backend == "nccl"
    device = "cuda:0" if nccl else "cpu"
    for version, layout, weights, expect in ((4, "tensors", w, base), (5, "flattened", w2, g1)):
        sender = BroadcastSender(deliver_to(url), world_size=2, backend=args.broadcast_backend, device=device,
                                 bucket_bytes=args.bucket_mib << 20, layout=layout, timeout_s=300)  # fmt: skip
        on_device = {n: t.to(device) for n, t in weights.items()}
        figures[f"broadcast_{layout}_v{version}"] = sender.publish(on_device.items(), version)
        got = generate(url)
        checks[f"broadcast_{layout}_as_expected"] = same(got, expect) and got["version"] == str(version)
        sender.close()
    figures["generations"] = {"baseline": base, "w_prime": g1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", default="/root/qwen3-0.6b-rand")
    parser.add_argument("--engine-gpu", type=int, default=0)
    parser.add_argument("--broadcast-backend", choices=("gloo", "nccl"), default="gloo")
    parser.add_argument("--bucket-mib", type=int, default=256)
    parser.add_argument("--disk-dir", default="/root/wsync")
    parser.add_argument("--server-args", default="--mem-fraction-static 0.5 --attention-backend triton")
    args = parser.parse_args()
    server_args = tuple(args.server_args.split()) + ("--base-gpu-id", str(args.engine_gpu))
    engine = EngineConfig(model_path=args.model_path, backend="sglang", server_args=server_args, startup_timeout_s=900)
    checks: dict[str, bool] = {}
    figures: dict[str, Any] = {}
    started = time.time()
    try:
        with EngineGroup(EngineGroupConfig(engine=engine, num_engines=1)) as group:
            run_steps(group.engine_urls[0], args, checks, figures)
    except Exception as exc:  # report what ran, then fail
        figures["error"] = f"{type(exc).__name__}: {exc}"
    result = {"ok": bool(checks) and all(checks.values()) and "error" not in figures, "checks": checks,
              "wall_s": round(time.time() - started, 1), "args": vars(args), **figures}  # fmt: skip
    line = json.dumps(result, default=str)
    print(line)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "weight_sync.json").write_text(line + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
