"""Benchmark slime.buffer packing and balancing on one large step: 100k long-tail samples over 8 DP ranks.

Two pipelines are timed (best and median of `--repeats` runs, wall clock and process CPU time):

- `pack+balance` (slime's order, what trainers run): first-fit pack every sample into micro-batches of at
  most `--max-tokens-per-gpu` tokens, align the count to a multiple of DP, then Karmarkar-Karp the
  micro-batches over the ranks with equal counts (`plan_dp_micro_batches(balance=True)`).
- `balance+pack`: Karmarkar-Karp the samples themselves over the ranks (`balance_partitions`), then first-fit
  pack each rank's share.

The balance ratio is max/mean of the ranks' token totals (1.0 is perfect). Lengths are
`clip(int(200 * lognormvariate(1.5, 1.0)), 16, 65536)`: median ~900 tokens, a tail past 50k.

    uv run --frozen python benchmarks/bench_buffer.py            # goal: pack+balance < 100 ms
    uv run --frozen python benchmarks/bench_buffer.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from slime.buffer import balance_partitions, pack_micro_batches, plan_dp_micro_batches


def long_tail_lengths(num_samples: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [max(16, min(65536, int(200 * rng.lognormvariate(1.5, 1.0)))) for _ in range(num_samples)]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, dict[str, float]]:
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        cpus.append((time.process_time() - cpu) * 1e3)
        walls.append((time.perf_counter() - wall) * 1e3)
    return out, {
        "wall_ms_best": min(walls),
        "wall_ms_median": statistics.median(walls),
        "cpu_ms_best": min(cpus),
        "cpu_ms_median": statistics.median(cpus),
    }


def rank_ratio(lengths: list[int], ranks: list[list[list[int]]]) -> float:
    totals = [sum(lengths[i] for mb in rank for i in mb) for rank in ranks]
    return max(totals) / statistics.fmean(totals)


def run(args: argparse.Namespace) -> dict[str, Any]:
    lengths = long_tail_lengths(args.samples, args.seed)
    dp, budget = args.dp, args.max_tokens_per_gpu
    _, pack_only = timed(lambda: pack_micro_batches(lengths, budget), args.repeats)
    plan, pipeline = timed(
        lambda: plan_dp_micro_batches(lengths, dp_size=dp, max_tokens_per_gpu=budget, balance=True), args.repeats
    )
    strided = plan_dp_micro_batches(lengths, dp_size=dp, max_tokens_per_gpu=budget, balance=False)

    def balance_then_pack() -> list[list[list[int]]]:
        shares = balance_partitions(lengths, dp)
        return [[[share[j] for j in mb] for mb in pack_micro_batches([lengths[i] for i in share], budget)]
                for share in shares]  # fmt: skip

    sample_plan, sample_first = timed(balance_then_pack, max(1, args.repeats // 2))
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "samples": len(lengths),
        "dp": dp,
        "max_tokens_per_gpu": budget,
        "total_tokens": sum(lengths),
        "max_length": max(lengths),
        "over_budget_samples": sum(n > budget for n in lengths),
        "pack_only": pack_only,
        "pack+balance": {
            **pipeline,
            "micro_batches_per_rank": len(plan[0]),
            "balance_ratio_max_over_mean": rank_ratio(lengths, plan),
            "round_robin_ratio_max_over_mean": rank_ratio(lengths, strided),
        },
        "balance+pack": {
            **sample_first,
            "micro_batches_per_rank": [len(r) for r in sample_plan],
            "balance_ratio_max_over_mean": rank_ratio(lengths, sample_plan),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--dp", type=int, default=8)
    parser.add_argument("--max-tokens-per-gpu", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    head = {k: v for k, v in result.items() if not isinstance(v, dict)}
    print(" ".join(f"{k}={v}" for k, v in head.items()))
    for name in ("pack_only", "pack+balance", "balance+pack"):
        stats = result[name]
        line = f"{name:13s} wall best {stats['wall_ms_best']:7.1f} ms (median {stats['wall_ms_median']:7.1f})"
        line += f"  cpu best {stats['cpu_ms_best']:7.1f} ms"
        if "balance_ratio_max_over_mean" in stats:
            line += f"  balance max/mean {stats['balance_ratio_max_over_mean']:.6f}"
        print(line)
    print(f"round-robin (no --balance-data) max/mean {result['pack+balance']['round_robin_ratio_max_over_mean']:.6f}")


if __name__ == "__main__":
    main()
