"""Benchmark slime.loss on one full step: 256 responses x 4096 tokens (1M packed tokens) on CPU.

Timed (best and median of `--repeats` runs, wall clock and process CPU time):

- `loss+backward <variant>`: `compute_loss` on the whole step as one micro-batch, then `backward()` to the
  log-probs. The loss takes per-token log-probs, not logits, so no vocabulary is involved here.
Responses are all `--seq-len` long unless `--ragged`.

- `advantages <estimator>`: `compute_advantages` over the whole step (grpo; ppo = reward KL + chunked GAE).
- `gae serial` / `gae chunked`: the two GAE scans on the same data (they are equal; see the tests).
- `logprob+entropy fwd+bwd`: the fused, row-chunked `log_probs_and_entropy_from_logits` on a small-vocab
  surrogate (`--logit-tokens` x `--vocab` logits), reported per token as well.

    uv run --frozen python benchmarks/bench_loss.py                 # full size (1M tokens)
    uv run --frozen python benchmarks/bench_loss.py --num-seqs 32   # quicker
    uv run --frozen python benchmarks/bench_loss.py --json          # machine-readable
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from slime.loss import (
    LossConfig,
    compute_advantages,
    compute_loss,
    gae_chunked,
    gae_serial,
    log_probs_and_entropy_from_logits,
)

VARIANTS: dict[str, LossConfig] = {
    "grpo (default)": LossConfig(),
    "grpo per-token": LossConfig(calculate_per_token_loss=True),
    "grpo+kl+entropy+tis+dual": LossConfig(
        use_kl_loss=True, kl_loss_coef=0.01, kl_loss_type="low_var_kl", entropy_coef=0.001, use_tis=True, eps_clip_c=3.0
    ),
    "gspo": LossConfig(advantage_estimator="gspo", eps_clip=3e-4, eps_clip_high=4e-4),
    "cispo": LossConfig(advantage_estimator="cispo", eps_clip=1.0, eps_clip_high=4.0),
}


DEVICE = torch.device("cpu")


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    walls, cpus = [], []
    fn()  # warm-up: allocator and first-call dispatch
    _sync()
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        _sync()
        cpus.append((time.process_time() - cpu) * 1e3)
        walls.append((time.perf_counter() - wall) * 1e3)
    return {
        "wall_ms_best": min(walls),
        "wall_ms_median": statistics.median(walls),
        "cpu_ms_best": min(cpus),
        "cpu_ms_median": statistics.median(cpus),
    }


def make_step(num_seqs: int, seq_len: int, group_size: int, ragged: bool, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.full((num_seqs,), seq_len)
    if ragged:
        lengths = torch.randint(seq_len // 2, seq_len + 1, (num_seqs,), generator=gen)
        lengths[0] = seq_len  # the longest sample sets the padded scan length
    cu = torch.zeros(num_seqs + 1, dtype=torch.long)
    cu[1:] = lengths.cumsum(0)
    num_tokens = int(cu[-1])
    log_probs = -torch.rand(num_tokens, generator=gen) * 3
    step = {
        "cu_seqlens": cu,
        "loss_mask": (torch.rand(num_tokens, generator=gen) < 0.95).long(),
        "rewards": (torch.rand(num_seqs, generator=gen) < 0.5).float(),
        "group_ids": torch.arange(num_seqs) // group_size,
        "log_probs": log_probs,
        "old_log_probs": log_probs + 0.05 * torch.randn(num_tokens, generator=gen),
        "ref_log_probs": log_probs + 0.1 * torch.randn(num_tokens, generator=gen),
        "rollout_log_probs": log_probs + 0.05 * torch.randn(num_tokens, generator=gen),
        "entropy": torch.rand(num_tokens, generator=gen) * 2,
        "values": torch.randn(num_tokens, generator=gen),
    }
    return {name: value.to(DEVICE) for name, value in step.items()}


def bench_losses(step: dict[str, torch.Tensor], repeats: int) -> dict[str, dict[str, float]]:
    advantages, _ = compute_advantages(
        LossConfig(), rewards=step["rewards"], group_ids=step["group_ids"], cu_seqlens=step["cu_seqlens"],
        loss_mask=step["loss_mask"],
    )  # fmt: skip
    cu, mask = step["cu_seqlens"], step["loss_mask"]
    num_samples = cu.shape[0] - 1
    sums = torch.zeros(num_samples, device=DEVICE).index_add_(
        0, torch.repeat_interleave(torch.arange(num_samples, device=DEVICE), cu[1:] - cu[:-1]), mask.float()
    )
    denominators = sums.clamp_min(1)
    results = {}
    for name, config in VARIANTS.items():

        def run(config: LossConfig = config) -> None:
            log_probs = step["log_probs"].clone().requires_grad_()
            loss, _ = compute_loss(
                config, log_probs=log_probs, old_log_probs=step["old_log_probs"], advantages=advantages,
                loss_mask=mask, cu_seqlens=cu, sample_denominators=denominators,
                num_global_tokens=mask.sum().float(), num_global_samples=float(num_samples),
                ref_log_probs=step["ref_log_probs"], rollout_log_probs=step["rollout_log_probs"],
                entropy=step["entropy"],
            )  # fmt: skip
            loss.backward()

        results[f"loss+backward {name}"] = timed(run, repeats)
    return results


def bench_advantages(step: dict[str, torch.Tensor], seq_len: int, repeats: int) -> dict[str, dict[str, float]]:
    common = {k: step[k] for k in ("rewards", "group_ids", "cu_seqlens", "loss_mask")}
    ppo = LossConfig(advantage_estimator="ppo", kl_coef=0.01, gamma=0.99, lambd=0.95)
    extra = {k: step[k] for k in ("old_log_probs", "ref_log_probs", "values")}
    results = {
        "advantages grpo": timed(lambda: compute_advantages(LossConfig(), **common), repeats),
        "advantages ppo (kl + chunked gae)": timed(lambda: compute_advantages(ppo, **common, **extra), repeats),
    }
    rewards, values, cu = step["entropy"], step["values"], step["cu_seqlens"]
    results["gae serial"] = timed(lambda: gae_serial(rewards, values, cu, 0.99, 0.95, max_seqlen=seq_len), repeats)
    results["gae chunked"] = timed(lambda: gae_chunked(rewards, values, cu, 0.99, 0.95, max_seqlen=seq_len), repeats)
    return results


def bench_logprob(num_tokens: int, vocab: int, chunk: int | None, repeats: int) -> dict[str, dict[str, float]]:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(num_tokens, vocab, generator=gen).to(DEVICE)
    targets = torch.randint(0, vocab, (num_tokens,), generator=gen).to(DEVICE)

    def run() -> None:
        x = logits.requires_grad_()
        log_probs, entropy = log_probs_and_entropy_from_logits(x, targets, temperature=0.8, chunk_size=chunk)
        (log_probs.sum() + 0.01 * entropy.sum()).backward()
        x.grad = None

    timing = timed(run, repeats)
    timing["us_per_token_best"] = timing["wall_ms_best"] * 1e3 / num_tokens
    return {f"logprob+entropy fwd+bwd {num_tokens}x{vocab} chunk={chunk or 'auto'}": timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-seqs", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=4096, help="response length (the longest with --ragged)")
    parser.add_argument("--ragged", action="store_true", help="lengths uniform in [seq_len / 2, seq_len]")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--logit-tokens", type=int, default=8192)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--logit-chunk", type=int, default=None, help="rows per chunk (default: automatic)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu (the reported figure) or cuda")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    step = make_step(args.num_seqs, args.seq_len, args.group_size, args.ragged, seed=0)
    results = bench_losses(step, args.repeats)
    results |= bench_advantages(step, args.seq_len, args.repeats)
    results |= bench_logprob(args.logit_tokens, args.vocab, args.logit_chunk, args.repeats)
    header = {
        "tokens": int(step["cu_seqlens"][-1]),
        "sequences": args.num_seqs,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(DEVICE) if DEVICE.type == "cpu" else torch.cuda.get_device_name(DEVICE),
        "machine": platform.processor() or platform.machine(),
    }
    if args.json:
        print(json.dumps({"setup": header, "results": results}, indent=2))
        return
    print(" ".join(f"{k}={v}" for k, v in header.items()))
    for name, timing in results.items():
        extra = f"  ({timing['us_per_token_best']:.3f} us/token)" if "us_per_token_best" in timing else ""
        print(
            f"{name:<52} wall best {timing['wall_ms_best']:9.1f} ms  median {timing['wall_ms_median']:9.1f} ms  "
            f"cpu best {timing['cpu_ms_best']:9.1f} ms{extra}"
        )


if __name__ == "__main__":
    main()
