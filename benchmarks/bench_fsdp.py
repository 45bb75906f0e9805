"""Benchmark slime.fsdp's train step on CPU: tokens/s of `FSDPPolicy.train` on a tiny random Qwen3.

Timed (best and median of `--repeats` calls after one warm-up, wall clock and process CPU time):

- `train grpo`: one rollout batch, one optimizer step (slime's fast path: the old log-probs are the
  current ones, so it is one forward + backward per micro-batch, then clip + AdamW).
- `train grpo+kl`: the same with `use_kl_loss` (reference log-probs: weights swapped in from host memory,
  one extra forward) and `num_steps_per_rollout=2` (old log-probs recomputed: another forward).
- `log-probs`: `compute_log_probs` alone (forward only).

Tokens are prompt + response tokens of every sample. World size 1 (gloo), float32, packed micro-batches of
`--max-tokens` tokens. The model is built with `testing/slime_testkit` (random weights, no download).

    uv run --frozen python benchmarks/bench_fsdp.py
    uv run --frozen python benchmarks/bench_fsdp.py --hidden 256 --layers 4 --samples 32 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testing"))

from slime.fsdp import FSDPConfig, FSDPPolicy, init_distributed  # noqa: E402
from slime.loss import LossConfig  # noqa: E402
from slime.types import RolloutBatch, TrainSample  # noqa: E402


def make_batch(num_samples: int, seq_len: int, vocab: int, seed: int = 0) -> RolloutBatch:
    """Samples of `seq_len` tokens (a quarter prompt), in groups of 4, with 0/1 rewards."""
    rng = random.Random(seed)
    prompt = seq_len // 4
    samples = tuple(
        TrainSample(
            tokens=tuple(rng.randrange(vocab) for _ in range(seq_len)),
            response_length=seq_len - prompt,
            loss_mask=(1,) * (seq_len - prompt),
            reward=float(rng.random() < 0.5),
            group_index=i // 4,
            index=i,
        )
        for i in range(num_samples)
    )
    return RolloutBatch(rollout_id=0, samples=samples, n_samples_per_prompt=4)


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    walls, cpus = [], []
    fn()  # warm-up: allocator, first-call dispatch, optimizer state
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return {"wall_s_best": min(walls), "wall_s_median": statistics.median(walls), "cpu_s_best": min(cpus)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=1024, help="--max-tokens-per-gpu of the packing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from slime_testkit.models import build_model

    info = init_distributed("cpu")
    model_dir = build_model(
        tempfile.mkdtemp(prefix="bench_fsdp_"), "qwen3", hidden_size=args.hidden, num_layers=args.layers
    )
    batch = make_batch(args.samples, args.seq_len, vocab=256)
    tokens = batch.num_tokens
    base = FSDPConfig(
        hf_checkpoint=str(model_dir), lr=1e-5, use_dynamic_batch_size=True, max_tokens_per_gpu=args.max_tokens
    )
    variants = {
        "train grpo": base,
        "train grpo+kl": FSDPConfig(
            **{f: getattr(base, f) for f in ("hf_checkpoint", "lr", "use_dynamic_batch_size", "max_tokens_per_gpu")},
            loss=LossConfig(use_kl_loss=True, kl_loss_coef=0.01),
            num_steps_per_rollout=2,
        ),
    }
    rows = []
    for name, config in variants.items():
        policy = FSDPPolicy(config, info)
        rows.append({"name": name, **timed(lambda p=policy: p.train(0, batch), args.repeats)})
        if name == "train grpo":
            rows.append({"name": "log-probs", **timed(lambda p=policy: p.compute_log_probs(batch), args.repeats)})
    for row in rows:
        row["tokens_per_s"] = tokens / row["wall_s_best"]
        row["tokens_per_cpu_s"] = tokens / row["cpu_s_best"]
    result = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": args.threads,
        "model": {
            "hidden": args.hidden,
            "layers": args.layers,
            "params": sum(p.numel() for p in policy.model.parameters()),
        },
        "tokens_per_step": tokens,
        "samples": args.samples,
        "seq_len": args.seq_len,
        "max_tokens_per_gpu": args.max_tokens,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"tiny Qwen3 h={args.hidden} L={args.layers}, {tokens} tokens/step, {args.threads} thread(s)")
        for row in rows:
            print(
                f"  {row['name']:<16} {row['wall_s_best'] * 1e3:9.1f} ms best"
                f"  {row['wall_s_median'] * 1e3:9.1f} ms median"
                f"  {row['tokens_per_s']:10.0f} tok/s  ({row['tokens_per_cpu_s']:.0f} tok per CPU-s)"
            )
    return result


if __name__ == "__main__":
    main()
