"""Throughput and 6N-MFU of slime.fsdp's train step for a random-init Qwen3-0.6B-shaped model on one GPU.

It writes a random bf16 checkpoint of the public Qwen3-0.6B shape (tied embeddings) to a temporary folder,
builds `FSDPPolicy` on it (FSDP2, bf16 compute, float32 master weights and reduction, packed varlen
attention), and times `train()` on a rollout batch of `--samples` sequences of random length around
`--seq-len`, packed first-fit into micro-batches of at most `--max-tokens` tokens (4k by default).

Rows (median of `--repeats` calls after one warm-up, each ended by `torch.cuda.synchronize()`):

- `train grpo`: one optimizer step on the batch (fast path: forward + backward per micro-batch, clip, AdamW).
- `train grpo+kl`: `use_kl_loss` (the reference's shards are swapped in from pinned host memory for one extra
  forward) and `num_steps_per_rollout=2` (old log-probs recomputed: one more forward); two optimizer steps.
- `log-probs`: `compute_log_probs` (forward only).

MFU: `2 * N * passes * tokens / time / peak`, i.e. 6N per token for `train grpo` (passes = 3: forward +
backward), 10N for `train grpo+kl` (two extra forwards), 2N for `log-probs`; N = all parameters (the tied
embedding counts once, as the LM head's matmul). `mfu_6n_attn` adds causal attention FLOPs
(per forward: 2 x 2 x layers x heads x head_dim x sum(len^2) / 2). Peak: dense bf16 of the device
(H100/H200 SXM 989 TFLOP/s, H100 PCIe 756, A100 312) or `--peak-tflops`.

One JSON object goes to stdout; progress goes to stderr. Needs torch, transformers and the repository's
packages on PYTHONPATH (no peft, no uv):

    PYTHONPATH=$(ls -d packages/*/src | paste -sd:) python ci/gpu/fsdp/bench_fsdp_gpu.py
    PYTHONPATH=... python ci/gpu/fsdp/bench_fsdp_gpu.py --device cpu --model tiny --samples 8 --seq-len 64 \
        --max-tokens 256 --repeats 1          # logic check on a CPU machine
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from slime.fsdp import FSDPConfig, FSDPPolicy, init_distributed
from slime.loss import LossConfig
from slime.types import RolloutBatch, TrainSample

# name: (vocab, hidden, layers, q heads, kv heads, head dim, ffn) from the public Qwen3 configs.
MODELS = {
    "0.6b": (151936, 1024, 28, 16, 8, 128, 3072),
    "tiny": (1000, 64, 2, 4, 2, 16, 128),
}
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4), ("A100", 312.0))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_checkpoint(model: str, out_dir: str) -> None:
    """A random-init Qwen3 of the named shape, saved in bf16 with transformers."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    vocab, hidden, layers, heads, kv_heads, head_dim, ffn = MODELS[model]
    config = Qwen3Config(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, head_dim=head_dim, intermediate_size=ffn, tie_word_embeddings=True,
        max_position_embeddings=40960, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    )  # fmt: skip
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).to(torch.bfloat16).save_pretrained(out_dir)


def make_batch(num_samples: int, seq_len: int, vocab: int, seed: int = 0) -> RolloutBatch:
    """Lengths uniform in [seq_len/2, 3 seq_len/2], a quarter prompt, groups of 8, 0/1 rewards."""
    rng = random.Random(seed)
    samples = []
    for i in range(num_samples):
        length = rng.randint(seq_len // 2, 3 * seq_len // 2)
        response = length - max(1, length // 4)
        samples.append(
            TrainSample(
                tokens=tuple(rng.randrange(vocab) for _ in range(length)),
                response_length=response,
                loss_mask=(1,) * response,
                reward=float(rng.random() < 0.5),
                group_index=i // 8,
                index=i,
            )  # fmt: skip
        )
    return RolloutBatch(rollout_id=0, samples=tuple(samples), n_samples_per_prompt=8)


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if override is not None:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def timed(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median seconds of `fn` after one warm-up."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def attention_flops(model: str, batch: RolloutBatch) -> float:
    """Causal attention FLOPs of forward + backward (3 forwards) over the batch's samples."""
    _, _, layers, heads, _, head_dim, _ = MODELS[model]
    return 3 * 2 * 2 * layers * heads * head_dim * sum(s.total_length**2 for s in batch.samples) / 2


def variants(base: dict[str, Any]) -> dict[str, FSDPConfig]:
    return {
        "train grpo": FSDPConfig(**base),
        "train grpo+kl": FSDPConfig(
            **base, loss=LossConfig(use_kl_loss=True, kl_loss_coef=0.01), num_steps_per_rollout=2
        ),
    }


def run_rows(args: argparse.Namespace, ckpt: str, batch: RolloutBatch, info: Any) -> tuple[list[dict[str, Any]], int]:
    base = {
        "hf_checkpoint": ckpt, "lr": 1e-6, "use_dynamic_batch_size": True, "max_tokens_per_gpu": args.max_tokens,
        "device": args.device, "gradient_checkpointing": args.gradient_checkpointing, "compile": args.compile,
    }  # fmt: skip
    rows: list[dict[str, Any]] = []
    params = 0
    for name, config in variants(base).items():
        if args.only_grpo and name != "train grpo":
            continue
        log(f"building {name} ...")
        policy = FSDPPolicy(config, info)
        params = sum(p.numel() for p in policy.model.parameters())
        # Forward-equivalents per token: fwd + bwd = 3; grpo+kl adds the ref and old-log-prob forwards (its
        # two optimizer steps each train half of the batch, so every token is still trained once).
        passes = 5 if "kl" in name else 3
        seconds = timed(lambda p=policy: p.train(0, batch), args.repeats, info.device)
        rows.append({"name": name, "seconds_median": seconds, "passes": passes})
        log(f"  {name}: {seconds:.3f} s")
        if name == "train grpo":
            seconds = timed(lambda p=policy: p.compute_log_probs(batch), args.repeats, info.device)
            rows.append({"name": "log-probs", "seconds_median": seconds, "passes": 1})
            log(f"  log-probs: {seconds:.3f} s")
        del policy
        if info.device.type == "cuda":
            torch.cuda.empty_cache()
    return rows, params


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="0.6b")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=4096, help="--max-tokens-per-gpu (packed micro-batch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile each decoder layer")
    parser.add_argument("--only-grpo", action="store_true", help="skip the grpo+kl row")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args(argv)

    info = init_distributed(args.device)
    batch = make_batch(args.samples, args.seq_len, MODELS[args.model][0])
    tokens = batch.num_tokens
    with tempfile.TemporaryDirectory(prefix="bench_fsdp_gpu_") as ckpt:
        log(f"writing a random {args.model} checkpoint ...")
        write_checkpoint(args.model, ckpt)
        if info.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(info.device)
        rows, params = run_rows(args, ckpt, batch, info)
    peak = peak_flops(info.device, args.peak_tflops)
    attn = attention_flops(args.model, batch)
    for row in rows:
        row["tokens_per_s"] = tokens / row["seconds_median"]
        model_flops = 2 * params * tokens * row["passes"]  # 6N per trained token
        flops = model_flops + attn * row["passes"] / 3
        row["mfu_6n"] = None if peak is None else model_flops / row["seconds_median"] / peak
        row["mfu_6n_attn"] = None if peak is None else flops / row["seconds_median"] / peak
    result = {
        "device": torch.cuda.get_device_name(info.device) if info.device.type == "cuda" else "cpu",
        "model": f"qwen3-{args.model} shape, random init",
        "params": params,
        "tokens_per_step": tokens,
        "samples": args.samples,
        "max_tokens_per_gpu": args.max_tokens,
        "gradient_checkpointing": args.gradient_checkpointing,
        "compile": args.compile,
        "peak_tflops": None if peak is None else peak / 1e12,
        "max_memory_gib": torch.cuda.max_memory_allocated(info.device) / 2**30 if info.device.type == "cuda" else None,
        "torch": torch.__version__,
        "rows": rows,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
