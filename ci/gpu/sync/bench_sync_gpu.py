"""Time slime.sync's colocated (CUDA IPC) and broadcast (NCCL) transports against the device copy bandwidth.

For Qwen3-0.6B- and Qwen3-4B-shaped bf16 weights (random values, HF names, tied embeddings) it measures:

- `copy`: a large device-to-device copy; `copy_gb_per_s` = bytes copied / time. The floor of moving B bytes
  once is B / copy_gb_per_s.
- `colocated`: the trainer (this process, GPU 0) publishes with `SharedMemorySender` (one CUDA IPC
  handle per 512 MiB bucket); an engine process on the same GPU maps the buckets and copies every tensor into
  its own preallocated model tensors. Goal from issue #5: seconds <= 2 x floor + 50 ms (flatten + load are
  two copies of every byte).
- `broadcast` (NCCL, with 2+ GPUs): `BroadcastSender` on GPU 0 -> `BroadcastReceiver` rank 1 on GPU 1, which
  copies into its model tensors. Its floor is bytes / `p2p_gb_per_s` (a measured GPU0 -> GPU1 copy).

Every time is the median of `--repeats` publishes after one warm-up, from the first byte read to the engine's
acknowledgement; the engine checks bit-exactness (integer sums of the bytes) after the last one. One JSON
object goes to stdout; progress goes to stderr. Needs only torch and the repository's packages:

    PYTHONPATH=$(ls -d packages/*/src | paste -sd:) python ci/gpu/sync/bench_sync_gpu.py
    PYTHONPATH=... python ci/gpu/sync/bench_sync_gpu.py --device cpu --models tiny   # logic check, no GPU
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from typing import Any

import torch

from slime.sync.broadcast import BroadcastReceiver, BroadcastSender
from slime.sync.shared_memory import SharedMemoryReceiver, SharedMemorySender

# name: (vocab, hidden, layers, q heads, kv heads, head dim, ffn) from the public Qwen3 configs.
MODELS = {
    "0.6b": (151936, 1024, 28, 16, 8, 128, 3072),
    "4b": (151936, 2560, 36, 32, 8, 128, 9728),
    "tiny": (1000, 64, 2, 4, 2, 16, 128),
}
GOAL_SLACK_S = 0.05


def qwen3_shapes(model: str) -> dict[str, tuple[int, ...]]:
    """HF names and shapes of a Qwen3 dense checkpoint with tied embeddings (no separate lm_head)."""
    vocab, hidden, layers, heads, kv_heads, head_dim, ffn = MODELS[model]
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (heads * head_dim, hidden),
            p + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.o_proj.weight": (hidden, heads * head_dim),
            p + "self_attn.q_norm.weight": (head_dim,),
            p + "self_attn.k_norm.weight": (head_dim,),
            p + "mlp.gate_proj.weight": (ffn, hidden),
            p + "mlp.up_proj.weight": (ffn, hidden),
            p + "mlp.down_proj.weight": (hidden, ffn),
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
        })  # fmt: skip
    shapes["model.norm.weight"] = (hidden,)
    return shapes


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fingerprint(tensors: dict[str, torch.Tensor]) -> int:
    """An exact, order-independent digest of the bytes: the int64 sum of every tensor's int16 words."""
    total = 0
    for t in tensors.values():
        words = t.reshape(-1).view(torch.int16)
        for chunk in words.split(1 << 26):
            total += int(chunk.to(torch.int64).sum())
    return total


def copy_bandwidth(src: torch.device, dst: torch.device, nbytes: int, repeats: int) -> float:
    """Bytes copied per second by `dst_buffer.copy_(src_buffer)` (median of `repeats` after a warm-up)."""
    a = torch.empty(nbytes, dtype=torch.uint8, device=src).fill_(1)
    b = torch.empty(nbytes, dtype=torch.uint8, device=dst)
    times = []
    for i in range(repeats + 1):
        sync(src), sync(dst)
        start = time.perf_counter()
        b.copy_(a)
        sync(src), sync(dst)
        if i:
            times.append(time.perf_counter() - start)
    return nbytes / statistics.median(times)


class Engine:
    """The engine's state for one transport: model tensors on its device and the matching receiver."""

    def __init__(self, transport: str, shapes: dict[str, tuple[int, ...]], device: str) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.model = {n: torch.empty(s, dtype=torch.bfloat16, device=self.device) for n, s in shapes.items()}
        if transport == "colocated":
            self.receiver: Any = SharedMemoryReceiver(self.load_weights)
        else:
            self.receiver = BroadcastReceiver(self.load_weights, rank=1, device=self.device)

    def load_weights(self, items: list[tuple[str, torch.Tensor]]) -> None:
        for name, tensor in items:
            self.model[name].copy_(tensor, non_blocking=True)
        sync(self.device)  # the views die after this call: the copies must have finished


def engine_main(conn: Any) -> None:
    """The engine process, shared by all rows: (command, argument) pairs in, (status, value) out."""
    state: Engine | None = None
    while (message := conn.recv()) is not None:
        command, arg = message
        try:
            if command == "setup":
                state = None  # free the previous row's model first
                state = Engine(*arg)
                conn.send(("ok", None))
            elif command == "fingerprint":
                conn.send(("ok", fingerprint(state.model)))
            else:
                conn.send(("ok", state.receiver.apply(json.loads(arg), peer="127.0.0.1")))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def run_transport(conn: Any, transport: str, model: str, args: argparse.Namespace, floor_bw: float) -> dict[str, Any]:
    """Publish `model`-shaped weights `--repeats` times over `transport` to the engine behind `conn`."""
    shapes = qwen3_shapes(model)
    src = torch.device(args.device if args.device == "cpu" else "cuda:0")
    dst = "cpu" if src.type == "cpu" else ("cuda:0" if transport == "colocated" else "cuda:1")

    def ask(command: str, arg: Any) -> Any:
        conn.send((command, arg))
        status, value = conn.recv()
        if status != "ok":
            raise RuntimeError(f"engine: {value}")
        return value

    def deliver(payload: dict[str, Any]) -> Any:
        return ask("apply", json.dumps(payload))

    ask("setup", (transport, shapes, dst))
    g = torch.Generator(device=src).manual_seed(0)
    weights = {n: torch.randn(s, generator=g, device=src, dtype=torch.bfloat16) for n, s in shapes.items()}
    bucket = args.bucket_mb * 2**20
    if transport == "colocated":
        sender: Any = SharedMemorySender(deliver, bucket_bytes=bucket, device=src)
    else:
        sender = BroadcastSender(deliver, world_size=2, device=src, bucket_bytes=bucket, timeout_s=300)
    times = []
    for version in range(args.repeats + 1):
        sync(src)
        stats = sender.publish(weights.items(), version)
        print(f"[bench_sync_gpu]   publish v{version}: {stats['seconds']:.3f} s", file=sys.stderr, flush=True)
        if version:  # version 0 is the warm-up (handles, communicators, allocator)
            times.append(stats["seconds"])
    exact = ask("fingerprint", None) == fingerprint(weights)
    print(f"[bench_sync_gpu]   bit-exact {exact}; closing", file=sys.stderr, flush=True)
    closing = time.perf_counter()
    sender.close()
    print(f"[bench_sync_gpu]   closed in {time.perf_counter() - closing:.3f} s", file=sys.stderr, flush=True)
    nbytes = sum(t.numel() * t.element_size() for t in weights.values())
    seconds = statistics.median(times)
    floor = nbytes / floor_bw
    backend = {("colocated", "cpu"): "shm", ("colocated", "cuda"): "cuda_ipc", ("broadcast", "cpu"): "gloo",
               ("broadcast", "cuda"): "nccl"}[transport, src.type]  # fmt: skip
    row = {"model": model, "transport": transport, "backend": backend, "bytes": nbytes,
           "num_buckets": int(stats["num_buckets"]), "seconds_median": seconds, "seconds_min": min(times),
           "gb_per_s": nbytes / seconds / 1e9, "floor_s": floor, "ratio_to_floor": seconds / floor,
           "bit_exact": exact}  # fmt: skip
    if transport == "colocated":
        row["goal_s"] = 2 * floor + GOAL_SLACK_S
        row["meets_goal"] = seconds <= row["goal_s"]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: shared memory + gloo")
    p.add_argument("--models", default="0.6b,4b", help=f"comma-separated subset of {sorted(MODELS)}")
    p.add_argument("--transports", default="colocated,broadcast", help="comma-separated subset, in that order")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--bucket-mb", type=int, default=512)
    p.add_argument("--copy-mb", type=int, default=None, help="bandwidth-probe copy size (2048 on GPU, 64 on CPU)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible; use --device cpu for a logic check")
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    src = torch.device("cuda:0" if gpus else "cpu")
    probe = (args.copy_mb or (2048 if gpus else 64)) * 2**20
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if gpus else "cpu", "gpus": gpus, "torch": torch.__version__,
        "copy_gb_per_s": copy_bandwidth(src, src, probe, 5) / 1e9,
    }  # fmt: skip
    two = gpus >= 2 or args.device == "cpu"
    if gpus >= 2:
        result["p2p_gb_per_s"] = copy_bandwidth(src, torch.device("cuda:1"), probe, 5) / 1e9
    result["rows"] = []
    ctx = mp.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=engine_main, args=(child_conn,), daemon=True)
    proc.start()
    try:
        for model in args.models.split(","):
            for transport in args.transports.split(","):
                if transport == "broadcast" and not two:
                    continue
                bw = result["p2p_gb_per_s" if transport == "broadcast" and gpus >= 2 else "copy_gb_per_s"] * 1e9
                print(f"[bench_sync_gpu] {model} {transport} ...", file=sys.stderr, flush=True)
                result["rows"].append(run_transport(conn, transport, model, args, bw))
                # each row as soon as it exists: a run stopped by a time limit keeps what it measured
                print(f"[bench_sync_gpu] row {json.dumps(result['rows'][-1])}", file=sys.stderr, flush=True)
    finally:
        conn.send(None)
        proc.join(120)
    if not two:
        result["note"] = "one GPU: the NCCL broadcast rows need two"
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
