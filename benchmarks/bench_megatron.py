"""Benchmark the pure-torch parts of slime.megatron on CPU (the whole train step needs a GPU: ci/gpu/megatron/).

Timed (median of `--repeats` runs after one warm-up, wall clock):

- `logprob vp fwd+bwd`: `vocab_parallel_log_probs` (one shard, row chunks, hand-written backward) with entropy on
  `--tokens` x `--vocab` bf16 logits, against slime.loss's single-device `log_probs_and_entropy_from_logits`.
- `varlen attention fwd`: `varlen_causal_attention`'s exact CPU path on a packed row of `--tokens` tokens cut
  into sequences of about `--seq-len`, against one padded causal SDPA over the same sequences.
- `rope q+k`: one layer's RoPE on a packed row, `slime.megatron.packed_rope` (one pass) against Megatron's unfused
  THD path (a host read-back of the lengths and one rotation per sequence).
- `pack micro-batch`: `PackedMicroBatch.build` of a `--tokens`-token micro-batch (host-side layout work).

    uv run --frozen python benchmarks/bench_megatron.py
    uv run --frozen python benchmarks/bench_megatron.py --tokens 1024 --vocab 8192 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from slime.loss import log_probs_and_entropy_from_logits
from slime.megatron.packing import PackedMicroBatch
from slime.megatron.vocab_parallel import vocab_parallel_log_probs
from slime.types import TrainSample


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_log_probs(tokens: int, vocab: int, repeats: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(tokens, vocab, generator=gen) * 2).bfloat16()
    targets = torch.randint(0, vocab, (tokens,), generator=gen)

    def ours() -> None:
        x = logits.clone().requires_grad_(True)
        lp, ent = vocab_parallel_log_probs(x, targets, chunk_size=max(1, (1 << 24) // vocab), with_entropy=True)
        (lp.sum() + ent.sum()).backward()

    def single_device() -> None:
        x = logits.clone().requires_grad_(True)
        lp, ent = log_probs_and_entropy_from_logits(x, targets)
        (lp.sum() + ent.sum()).backward()

    rows = []
    for name, fn in (("logprob vp fwd+bwd", ours), ("logprob slime.loss fwd+bwd", single_device)):
        seconds = timed(fn, repeats)
        rows.append({"name": name, "seconds": seconds, "tokens_per_s": tokens / seconds})
    return rows


def bench_attention(tokens: int, seq_len: int, repeats: int) -> list[dict]:
    from slime.megatron.core_attention import varlen_causal_attention

    heads, kv_heads, dim = 16, 8, 64
    lengths = []
    while sum(lengths) < tokens:
        lengths.append(min(tokens - sum(lengths), random.Random(len(lengths)).randint(seq_len // 2, 3 * seq_len // 2)))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    q, k, v = torch.randn(tokens, heads, dim), torch.randn(tokens, kv_heads, dim), torch.randn(tokens, kv_heads, dim)
    longest = max(lengths)

    def padded() -> None:
        pq, pk, pv = (torch.zeros(len(lengths), t.size(1), longest, dim) for t in (q, k, v))
        for i, (a, b) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)):
            pq[i, :, : b - a], pk[i, :, : b - a], pv[i, :, : b - a] = (t[a:b].transpose(0, 1) for t in (q, k, v))
        F.scaled_dot_product_attention(pq, pk, pv, is_causal=True, enable_gqa=True)

    rows = []
    for name, fn in (
        ("varlen attention fwd (exact CPU path)", lambda: varlen_causal_attention(q, k, v, cu, longest, dim**-0.5)),
        ("padded sdpa fwd (baseline)", padded),
    ):
        seconds = timed(fn, repeats)
        rows.append({"name": name, "seconds": seconds, "tokens_per_s": tokens / seconds, "sequences": len(lengths)})
    return rows


def bench_rope(tokens: int, seq_len: int, repeats: int) -> list[dict]:
    """RoPE of one layer's q and k over a packed row: slime's one pass vs Megatron's per-sequence THD path."""
    from types import SimpleNamespace

    from megatron.core.models.common.embeddings.rope_utils import apply_rotary_pos_emb

    from slime.megatron.packed_rope import PackedSeqParamsWithPositions, rotate_packed

    heads, kv_heads, dim = 16, 8, 128
    lengths = []
    while sum(lengths) < tokens:
        lengths.append(min(tokens - sum(lengths), random.Random(len(lengths)).randint(seq_len // 2, 3 * seq_len // 2)))
    cu = torch.tensor([0, *lengths]).cumsum(0).to(torch.int32)
    angles = torch.outer(torch.arange(max(lengths), dtype=torch.float32), torch.rand(dim // 2))
    freqs = torch.cat((angles, angles), dim=-1)[:, None, None, :]
    q, k = torch.randn(tokens, heads, dim).bfloat16(), torch.randn(tokens, kv_heads, dim).bfloat16()
    config = SimpleNamespace(apply_rope_fusion=False, rotary_interleaved=False, multi_latent_attention=False)
    one_rank = SimpleNamespace(size=lambda: 1, rank=lambda: 0)
    params = PackedSeqParamsWithPositions(
        qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=max(lengths), max_seqlen_kv=max(lengths),
        positions=torch.cat([torch.arange(n) for n in lengths]), rotary_pos_emb=(freqs, freqs),
        rotary_cp_group=one_rank,
    )  # fmt: skip

    def megatron() -> None:
        for t in (q, k):
            apply_rotary_pos_emb(t, freqs, config=config, cu_seqlens=cu, cp_group=one_rank)

    rows = []
    for name, fn in (("rope q+k one pass (slime)", lambda: rotate_packed(q, k, params, config)),
                     ("rope q+k per sequence (megatron thd)", megatron)):  # fmt: skip
        seconds = timed(fn, repeats)
        rows.append({"name": name, "seconds": seconds, "tokens_per_s": tokens / seconds, "sequences": len(lengths)})
    return rows


def bench_packing(tokens: int, seq_len: int, repeats: int) -> list[dict]:
    rng = random.Random(0)
    samples, total = [], 0
    while total < tokens:
        n = rng.randint(seq_len // 2, 3 * seq_len // 2)
        tokens_ = tuple(rng.randrange(1000) for _ in range(n))
        samples.append(
            TrainSample(tokens=tokens_, response_length=n // 2, loss_mask=(1,) * (n // 2), reward=0.0, group_index=0,
                        index=len(samples))
        )  # fmt: skip
        total += n
    ids = list(range(len(samples)))
    cpu = torch.device("cpu")
    seconds = timed(lambda: PackedMicroBatch.build(samples, ids, pad_multiple=128, device=cpu), repeats)
    return [{"name": "pack micro-batch", "seconds": seconds, "tokens_per_s": total / seconds}]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = bench_log_probs(args.tokens, args.vocab, args.repeats)
    rows += bench_attention(args.tokens, args.seq_len, args.repeats)
    rows += bench_rope(args.tokens, args.seq_len, args.repeats)
    rows += bench_packing(args.tokens, args.seq_len, args.repeats)
    if args.json:
        print(json.dumps({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                          "args": vars(args), "rows": rows}))  # fmt: skip
        return
    print(f"{'benchmark':42s} {'seconds':>10s} {'tokens/s':>12s}")
    for row in rows:
        print(f"{row['name']:42s} {row['seconds']:10.4f} {row['tokens_per_s']:12.0f}")


if __name__ == "__main__":
    main()
