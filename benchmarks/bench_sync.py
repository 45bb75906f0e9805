"""Benchmark slime.sync's transports on CPU: GB/s for ~1 GiB of bf16 weights, trainer -> one engine process.

The weights have Qwen3-0.6B shapes (151936 x 1024 embedding, 28-layer geometry) truncated to the layer count
that makes `--gib` GiB. The engine is a separate process whose `load_weights` copies every tensor into
preallocated model tensors, as a real engine does. Each figure is the sender's `publish` wall time, from the
first byte read to the engine's acknowledgement (median of `--repeats`), and GB/s = weight bytes / that time.
GB/cpu-s divides by the CPU seconds of both processes instead, which a busy shared machine disturbs less. The
memcpy floor (one in-memory copy of every byte) is printed first; shm and broadcast copy every byte at least twice:

- `shm`: colocated, one shared-memory handle per 512 MiB bucket (CPU stand-in for CUDA IPC).
- `broadcast`: gloo broadcast over loopback, trainer rank 0 -> engine rank 1.
- `disk`: safetensors + manifest written, fsynced and renamed under `--disk-dir`, then read by the engine.
- `delta_full`: the delta transport's first publish (every tensor zstd-compressed; blob file in the temp dir).
- `delta_1pct`: a later publish after changing 1% of the elements of every tensor (XOR + zstd).

    uv run --frozen python benchmarks/bench_sync.py            # all transports, 1 GiB
    uv run --frozen python benchmarks/bench_sync.py --json --gib 0.25 --transports shm,delta
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import tempfile
import time
from typing import Any

import torch

from slime.sync import (
    BroadcastReceiver,
    BroadcastSender,
    DeltaReceiver,
    DeltaSender,
    DiskReceiver,
    DiskSender,
    SharedMemoryReceiver,
    SharedMemorySender,
)

TRANSPORTS = ("shm", "broadcast", "disk", "delta_full", "delta_1pct")
HIDDEN, VOCAB, FFN, HEADS, KV_HEADS, HEAD_DIM = 1024, 151936, 3072, 16, 8, 128  # Qwen3-0.6B


def qwen3_shapes(target_bytes: int) -> dict[str, tuple[int, ...]]:
    """Qwen3-0.6B-shaped bf16 weights, as many layers as fit in `target_bytes` (at least one)."""
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,)}
    layer = {
        "self_attn.q_proj.weight": (HEADS * HEAD_DIM, HIDDEN),
        "self_attn.k_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        "self_attn.v_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        "self_attn.o_proj.weight": (HIDDEN, HEADS * HEAD_DIM),
        "self_attn.q_norm.weight": (HEAD_DIM,),
        "self_attn.k_norm.weight": (HEAD_DIM,),
        "mlp.gate_proj.weight": (FFN, HIDDEN),
        "mlp.up_proj.weight": (FFN, HIDDEN),
        "mlp.down_proj.weight": (HIDDEN, FFN),
        "input_layernorm.weight": (HIDDEN,),
        "post_attention_layernorm.weight": (HIDDEN,),
    }
    layer_bytes = sum(2 * torch.Size(s).numel() for s in layer.values())
    embed_bytes = 2 * VOCAB * HIDDEN
    for i in range(max(1, (target_bytes - embed_bytes) // layer_bytes)):
        shapes.update({f"model.layers.{i}.{k}": s for k, s in layer.items()})
    return shapes


def make_weights(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=g, dtype=torch.float32).to(torch.bfloat16) for n, s in shapes.items()}


def perturb(weights: dict[str, torch.Tensor], fraction: float, seed: int) -> None:
    """Change `fraction` of the elements of every tensor in place (an optimizer step's footprint on bf16)."""
    g = torch.Generator().manual_seed(seed)
    for t in weights.values():
        flat = t.view(-1)
        idx = torch.randint(0, flat.numel(), (max(1, int(flat.numel() * fraction)),), generator=g)
        flat[idx] = flat[idx] * 1.01 + 0.01


def copy_bandwidth(nbytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """Bytes per second of one large in-memory copy on this machine: the floor a CPU transport is compared to."""
    a, b = torch.ones(nbytes, dtype=torch.uint8), torch.empty(nbytes, dtype=torch.uint8)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        b.copy_(a)
        times.append(time.perf_counter() - start)
    return nbytes / statistics.median(times)


def engine(conn: Any, transport: str, shapes: dict[str, tuple[int, ...]], root: str) -> None:
    """The engine process: preallocated model tensors, one receiver, payloads in over a pipe."""
    torch.set_num_threads(1)
    model = {n: torch.empty(s, dtype=torch.bfloat16) for n, s in shapes.items()}

    def load_weights(items: list[tuple[str, torch.Tensor]]) -> None:
        for name, tensor in items:
            model[name].copy_(tensor)

    receiver: Any
    if transport == "shm":
        receiver = SharedMemoryReceiver(load_weights)
    elif transport == "broadcast":
        receiver = BroadcastReceiver(load_weights, rank=1)
    elif transport == "disk":
        receiver = DiskReceiver(load_weights, root=root)
    else:
        receiver = DeltaReceiver(load_weights, root=root)
    while (message := conn.recv()) is not None:
        cpu = time.process_time()
        try:
            version = receiver.apply(json.loads(message), peer="127.0.0.1")
            conn.send(("ok", version, time.process_time() - cpu))
        except Exception as exc:
            conn.send(("error", repr(exc), 0.0))


def make_sender(transport: str, deliver: Any, root: str) -> Any:
    if transport == "shm":
        return SharedMemorySender(deliver)
    if transport == "broadcast":
        return BroadcastSender(deliver, world_size=2)
    if transport == "disk":
        return DiskSender(deliver, root)
    return DeltaSender(deliver, directory=root)  # file mode, as slime publishes deltas (no base64)


def bench(transport: str, weights: dict[str, torch.Tensor], repeats: int, root: str) -> dict[str, Any]:
    shapes = {n: tuple(t.shape) for n, t in weights.items()}
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=engine, args=(theirs, transport, shapes, root), daemon=True)
    proc.start()

    engine_cpu = [0.0]

    def deliver(payload: dict[str, Any]) -> int:
        ours.send(json.dumps(payload))
        status, value, cpu = ours.recv()
        engine_cpu[0] += cpu
        if status != "ok":
            raise RuntimeError(value)
        return value

    sender = make_sender(transport, deliver, root)
    version, seconds, wire, cpus = 0, [], [], []
    if transport == "delta_1pct":
        sender.publish(weights.items(), version)  # the full snapshot both sides diff against
    for _ in range(repeats):
        version += 1
        if transport == "delta_1pct":
            perturb(weights, 0.01, version)
        engine_cpu[0], cpu = 0.0, time.process_time()
        stats = (
            sender.publish(weights.items(), version, full=True)
            if transport == "delta_full"
            else (sender.publish(weights.items(), version))
        )
        seconds.append(stats["seconds"])
        cpus.append(time.process_time() - cpu + engine_cpu[0])
        wire.append(stats.get("wire_bytes", stats["bytes"]))
    sender.close()
    ours.send(None)
    proc.join(60)
    nbytes = sum(t.numel() * t.element_size() for t in weights.values())
    median = statistics.median(seconds)
    return {"transport": transport, "bytes": nbytes, "seconds_median": round(median, 4),
            "seconds_best": round(min(seconds), 4), "gb_per_s": round(nbytes / median / 1e9, 3),
            "wire_bytes_median": int(statistics.median(wire)), "cpu_seconds_median": round(statistics.median(cpus), 4),
            "gb_per_cpu_s": round(nbytes / statistics.median(cpus) / 1e9, 3)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=1.0, help="weight volume in GiB (default 1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--transports", default=",".join(TRANSPORTS), help=f"comma-separated subset of {TRANSPORTS}")
    p.add_argument("--disk-dir", default=None, help="where the disk transport publishes (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args()
    weights = make_weights(qwen3_shapes(int(args.gib * 2**30)))
    copy_gb_per_s = copy_bandwidth() / 1e9
    if not args.json:
        print(f"memcpy floor: {copy_gb_per_s:.2f} GB/s (one copy of every byte)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.disk_dir) as root:
        for transport in args.transports.split(","):
            rows.append(bench(transport, weights, args.repeats, root))
            if not args.json:
                r = rows[-1]
                print(
                    f"{transport:>11}: {r['gb_per_s']:7.3f} GB/s  median {r['seconds_median'] * 1e3:8.1f} ms  "
                    f"{r['gb_per_cpu_s']:7.3f} GB/cpu-s  ({r['bytes'] / 2**30:.2f} GiB, "
                    f"{r['wire_bytes_median'] / 2**20:.1f} MiB on the wire)",
                    flush=True,
                )
    if args.json:
        machine = {"cpus": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__}
        print(json.dumps({"machine": machine, "copy_gb_per_s": round(copy_gb_per_s, 3), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
