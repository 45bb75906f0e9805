"""GPU recipe for slime.megatron: train-step throughput / 6N-MFU / peak memory, and TP2-vs-TP1 logits.

`train` writes a random-init bf16 checkpoint of the public Qwen3-0.6B shape (tied embeddings) to a temporary
folder, builds `MegatronPolicy` on it (megatron-core local spec without TransformerEngine: torch varlen
attention on packed THD micro-batches, distributed optimizer, bf16 params with fp32 main weights and grads),
and times `train()` on a rollout batch of `--samples` sequences of random length around `--seq-len`, packed
first-fit into micro-batches of at most `--max-tokens` tokens (4k by default). One `train()` is one optimizer
step through the fast path (no reference, old log-probs = current): forward + backward per micro-batch.

`checkpoint` only writes that random checkpoint to `--save` (so that several runs share one). `logits` builds
the same model at `--tp` (1, or 2 under `torchrun --nproc-per-node 2`), runs one packed
micro-batch forward and writes the TP-gathered logits (`--save`) or compares them with a saved file
(`--compare`): max / mean absolute difference, relative error and argmax agreement.

MFU: `6 * N * tokens / time / peak`; N = all parameters (the tied embedding counts once, as the LM head's
matmul); tokens are real (unpadded) tokens divided by the GPUs of the world (TP x DP share one step's FLOPs).
`mfu_6n_attn` adds causal attention FLOPs (3 x 2 x 2 x layers x heads x head_dim x sum(len^2) / 2).
Peak: dense bf16 of the device (H100/H200 SXM 989 TFLOP/s) or `--peak-tflops`.
One JSON object goes to stdout; progress to stderr.

Needs torch, transformers, megatron-core 0.16.1, mbridge 0.15.1, einops and the repository's packages on
PYTHONPATH (see README.md beside this file for the device commands). `--device cpu --model tiny` is a logic check
on a CPU machine; it needs megatron's CPU test shim installed first (the package tests do that).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

# name: (vocab, hidden, layers, q heads, kv heads, head dim, ffn) from the public Qwen3 configs.
MODELS = {
    "0.6b": (151936, 1024, 28, 16, 8, 128, 3072),
    "4b": (151936, 2560, 36, 32, 8, 128, 9728),
    "tiny": (256, 64, 2, 4, 2, 16, 128),
}
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4), ("A100", 312.0))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_checkpoint(model: str, out_dir: str, device: str) -> None:
    """A random-init Qwen3 of the named shape (seed 0), saved in bf16 with transformers."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    vocab, hidden, layers, heads, kv, head_dim, ffn = MODELS[model]
    config = Qwen3Config(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, head_dim=head_dim, intermediate_size=ffn, max_position_embeddings=40960,
        rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        hf = Qwen3ForCausalLM(config).to(torch.bfloat16)
    hf.save_pretrained(out_dir)


def rollout_batch(samples: int, seq_len: int, vocab: int, seed: int):
    """Random sequences of length in [seq_len/2, 3 seq_len/2], the second half being the response."""
    from slime.types import RolloutBatch, TrainSample

    rng = random.Random(seed)
    out = []
    for i in range(samples):
        n = rng.randint(seq_len // 2, 3 * seq_len // 2)
        r = max(1, n // 2)
        tokens = tuple(rng.randrange(vocab) for _ in range(n))
        out.append(TrainSample(tokens=tokens, response_length=r, loss_mask=(1,) * r, reward=float(rng.random() < 0.5),
                               group_index=i // 8, index=i))  # fmt: skip
    return RolloutBatch(rollout_id=0, samples=tuple(out), n_samples_per_prompt=8)


def build_policy(args: argparse.Namespace, hf_dir: str):
    from slime.loss import LossConfig
    from slime.megatron import ActorConfig, parse_megatron_args
    from slime.megatron.policy import MegatronPolicy

    argv = ["--tensor-model-parallel-size", str(args.tp), "--lr", "1e-6", "--micro-batch-size", "1"]
    if args.tp > 1 and args.sequence_parallel:
        argv.append("--sequence-parallel")
    if args.no_wgrad_fusion:  # the A/B of slime.megatron.wgrad_fusion: Megatron's own linears
        argv.append("--no-gradient-accumulation-fusion")
    if args.build_all_first:  # the A/B of packing.MicroBatches: every micro-batch built before the first forward
        from slime.megatron import packing, policy

        lazy = packing.local_micro_batches
        policy.local_micro_batches = lambda *a, **k: list(lazy(*a, **k))
    if args.full_logits:  # the A/B of slime.megatron.response_rows (eager path): logits for every row
        from slime.megatron import response_rows

        response_rows.applies = lambda gpt: False
    if args.fusions:  # Megatron's compiled SwiGLU / bias-dropout-add, which only TE's layers get by default: the A/B
        from slime.megatron import training_configs

        training_configs.transformer_engine_available = lambda: True
    ns, rest = parse_megatron_args(argv)
    assert not rest, rest
    ns.bf16 = not args.fp32
    actor = ActorConfig(hf_checkpoint=hf_dir, use_dynamic_batch_size=True, max_tokens_per_gpu=args.max_tokens,
                        data_pad_size_multiplier=args.pad_multiplier, train_cuda_graphs=args.cuda_graphs)  # fmt: skip
    policy = MegatronPolicy(ns, actor, LossConfig())
    if args.compile_layers:  # probe for #9: every decoder layer's forward through torch.compile, dynamic shapes
        for module in policy.stack.modules:
            while not hasattr(module, "decoder"):
                module = module.module
            for layer in module.decoder.layers:
                layer.forward = torch.compile(layer.forward, dynamic=True)
    return policy


def count_params(model: str) -> int:
    """Parameters of the tied Qwen3 shape (embedding once, per-layer projections and norms, final norm)."""
    vocab, hidden, layers, heads, kv, head_dim, ffn = MODELS[model]
    per_layer = hidden * (heads + 2 * kv) * head_dim + heads * head_dim * hidden + 3 * hidden * ffn
    per_layer += 2 * hidden + 2 * head_dim
    return vocab * hidden + layers * per_layer + hidden


def peak_tflops(args: argparse.Namespace) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS if k in name), None)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def profile_step(policy: Any, batch: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One more train step under torch.profiler: the full table goes to `--profile`; returns the top ops and, on a
    GPU, how busy it was.

    Where the step's time goes is what the MFU work needs (issue #9): GEMMs vs attention vs norms/elementwise vs
    the log-prob/entropy pass over the vocabulary vs the optimizer; and `gpu_busy_fraction` (kernel time / wall
    time of the profiled step) tells a host-bound step (launches, syncs) from a device-bound one."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        policy.train(10_000, batch)
        _sync()
        wall = time.perf_counter() - start
    key = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    averages = prof.key_averages()
    Path(args.profile).write_text(averages.table(sort_by=key, row_limit=60, max_name_column_width=90))
    rows = sorted(averages, key=lambda e: getattr(e, key), reverse=True)[:25]
    total = sum(getattr(e, key) for e in averages) or 1.0
    top = [{"name": e.key[:90], "count": e.count, "ms": getattr(e, key) / 1e3, "share": getattr(e, key) / total}
           for e in rows]  # fmt: skip
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e6  # kernels of one stream do not overlap
    return {"profile_top": top, "profiled_step_s": wall, "gpu_kernel_s": busy if kernels else None,
            "gpu_busy_fraction": busy / wall if kernels else None, **gpu_gaps(kernels)}  # fmt: skip


def gpu_gaps(kernels: list) -> dict[str, Any]:
    """Where the GPU idles inside the profiled step: the longest gaps between consecutive kernels (with the kernels
    around them), and the idle time summed over gaps of at least 50 us (launch latency aside)."""
    if not kernels:
        return {}
    spans = sorted((e.time_range.start, e.time_range.end, e.name) for e in kernels)
    gaps = [(nxt[0] - cur[1], cur[2][:60], nxt[2][:60], (cur[1] - spans[0][0]) / 1e3)
            for cur, nxt in zip(spans, spans[1:], strict=False)]  # fmt: skip
    big = sorted((g for g in gaps if g[0] >= 50), reverse=True)
    top = [{"us": g[0], "after": g[1], "before": g[2], "at_ms": round(g[3], 2)} for g in big[:15]]
    return {"gpu_idle_in_gaps_ms": sum(g[0] for g in big) / 1e3, "gpu_gaps_over_50us": len(big), "gpu_top_gaps": top}


def host_profile(policy: Any, batch: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One more train step under cProfile (the top functions by own and cumulative time go to `--host-profile`),
    then one with CUDA's sync debug mode: where the host waits for the device (returns the counts per call site)."""
    import cProfile
    import io
    import pstats
    import traceback
    import warnings

    prof = cProfile.Profile()
    _sync()
    prof.enable()
    policy.train(args.warmup + args.repeats + 1, batch)
    _sync()
    prof.disable()
    text = io.StringIO()
    for key in ("tottime", "cumulative"):
        pstats.Stats(prof, stream=text).sort_stats(key).print_stats(45)
    Path(args.host_profile).write_text(text.getvalue())
    sites: dict[str, int] = {}

    def record(message, category, filename, lineno, file=None, line=None) -> None:
        if "synchroniz" in str(message):
            frames = traceback.extract_stack()[:-1]
            key = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-6:]))
            sites[key] = sites.get(key, 0) + 1

    if torch.cuda.is_available():
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            torch.cuda.set_sync_debug_mode("warn")
            try:
                policy.train(args.warmup + args.repeats + 2, batch)
            finally:
                torch.cuda.set_sync_debug_mode("default")
    top = dict(sorted(sites.items(), key=lambda kv: -kv[1])[:25])
    return {"host_profile": Path(args.host_profile).name, "sync_sites": top, "syncs": sum(sites.values())}


def graph_check(policy: Any, batch: Any) -> dict[str, Any]:
    """`--train-cuda-graphs` against eager on the same weights: the gradients of the step's micro-batches (a fixed
    weighting of the response log-probs), as the relative norm of the difference. Two eager runs give the noise
    floor (FlashAttention's backward accumulates with atomics, so runs differ in the last bits)."""
    from slime.megatron.forward import forward_backward

    batches = policy._batches(batch.samples, range(len(batch.samples)), train=True)
    head = policy._head()

    def loss_fn(mb, outputs):
        log_probs = outputs["log_probs"]
        weights = torch.linspace(-1.0, 1.0, log_probs.numel(), device=log_probs.device)
        return (log_probs * weights).sum() / 1000.0, {"rows": log_probs.new_tensor(float(log_probs.numel()))}

    def grads(graphs: Any) -> torch.Tensor:
        for model in policy.stack.models:
            model.zero_grad_buffer()
        forward_backward(policy.stack, batches, head, loss_fn, graphs)
        return torch.cat([b.grad_data.float() for m in policy.stack.models for b in m.buffers])

    eager = grads(None)
    eager_again, graphed = grads(None), grads(policy.graphs)
    graphed_again = grads(policy.graphs)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).norm() / b.norm()).item()

    return {"graph_vs_eager_grad_rel": rel(graphed, eager), "eager_vs_eager_grad_rel": rel(eager_again, eager),
            "graph_vs_graph_grad_rel": rel(graphed_again, graphed), "micro_batches": len(batches),
            "grad_norm": eager.norm().item()}  # fmt: skip


def run_train(args: argparse.Namespace, hf_dir: str) -> dict[str, Any]:
    policy = build_policy(args, hf_dir)
    vocab, hidden, layers, heads, _, head_dim, _ = MODELS[args.model]
    batch = rollout_batch(args.samples, args.seq_len, vocab, seed=1)
    n_params = count_params(args.model)
    log(f"built: {n_params / 1e6:.1f}M parameters, {batch.num_tokens} tokens in {len(batch.samples)} samples")
    check = graph_check(policy, batch) if args.graph_check else None
    if check:
        log(f"graph check: {check}")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup):
        policy.train(i, batch)
    _sync()
    times, metrics = [], {}
    for i in range(args.repeats):
        start = time.perf_counter()
        metrics = dict(policy.train(args.warmup + i, batch))
        _sync()
        times.append(time.perf_counter() - start)
        loss, norm = metrics.get("train/loss"), metrics.get("train/grad_norm")
        log(f"train {i}: {times[-1]:.3f} s, loss {loss}, grad_norm {norm}")
    profiled = profile_step(policy, batch, args) if args.profile else None
    host = host_profile(policy, batch, args) if args.host_profile else None
    seconds = statistics.median(times)
    gpus = int(os.environ.get("WORLD_SIZE", "1"))  # every GPU of the world shares the step's FLOPs (TP x DP)
    tokens_per_s = batch.num_tokens / seconds / gpus
    attn = 3 * 2 * 2 * layers * heads * head_dim * sum(s.total_length**2 for s in batch.samples) / 2 / gpus
    peak = peak_tflops(args)
    result: dict[str, Any] = {
        "mode": "train",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "model": args.model,
        "tp": args.tp,
        "gpus": gpus,
        "params": n_params,
        "samples": len(batch.samples),
        "tokens": batch.num_tokens,
        "max_tokens_per_micro_batch": args.max_tokens,
        "seconds_median": seconds,
        "seconds_all": times,
        "tokens_per_s_per_gpu": tokens_per_s,
        "peak_tflops": peak,
        "mfu_6n": None if peak is None else 6 * n_params * tokens_per_s / (peak * 1e12),
        "mfu_6n_attn": None if peak is None else (6 * n_params * tokens_per_s + attn / seconds) / (peak * 1e12),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "last_metrics": metrics,
        "attention": "FlashAttention-2 varlen" if torch.cuda.is_available() and not args.fp32 else "reference sdpa",
        "compiled_layers": args.compile_layers,
        "cuda_graphs": args.cuda_graphs,
        "wgrad_fusion": not args.no_wgrad_fusion,
        "response_row_logits": not args.full_logits,
        "graph_captures": policy.graphs.captures if policy.graphs is not None else None,
    }
    result["meets_goal_mfu_30"] = None if result["mfu_6n"] is None else result["mfu_6n"] >= 0.30
    extra = {"graph_check": check} if check else {}
    return {**result, **extra, **_dynamo_figures(args), **(profiled or {}), **(host or {})}


def _dynamo_figures(args: argparse.Namespace) -> dict[str, Any]:
    """With `--compile-layers`: how many graphs dynamo made, and its graph breaks and recompiles."""
    if not args.compile_layers:
        return {}
    from torch._dynamo.utils import counters

    return {"dynamo": {k: dict(v) for k, v in counters.items() if k in ("stats", "graph_break", "recompiles")}}


def run_logits(args: argparse.Namespace, hf_dir: str) -> dict[str, Any]:
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    from slime.megatron import _megatron_globals as mg
    from slime.megatron.packing import PackedMicroBatch

    policy = build_policy(args, hf_dir)
    batch = rollout_batch(8, args.seq_len, MODELS[args.model][0], seed=2)
    mb = PackedMicroBatch.build(batch.samples, range(len(batch.samples)), pad_multiple=args.pad_multiplier * args.tp,
                                device=mg.device())  # fmt: skip
    module = policy.stack.modules[0].eval()
    with torch.no_grad():
        out = module(input_ids=mb.tokens, position_ids=mb.position_ids, attention_mask=None,
                     packed_seq_params=mb.packed_seq_params)  # fmt: skip
        logits = gather_from_tensor_model_parallel_region(out)[0, : mb.num_tokens, : policy.stack.bridge.vocab_size]
    logits = logits.float().cpu()
    result: dict[str, Any] = {"mode": "logits", "tp": args.tp, "tokens": mb.num_tokens, "dtype": str(out.dtype)}
    if mg.world_rank() != 0:
        return result
    if args.save:
        torch.save(logits, args.save)
        result["saved"] = args.save
    if args.compare:
        ref = torch.load(args.compare)
        diff = (logits - ref).abs()
        result |= {
            "compared_with": args.compare,
            "max_abs_diff": diff.max().item(),
            "mean_abs_diff": diff.mean().item(),
            "rel_err": (diff.norm() / ref.norm()).item(),
            "argmax_agreement": (logits.argmax(-1) == ref.argmax(-1)).float().mean().item(),
        }
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["train", "logits", "checkpoint"])
    p.add_argument("--model", choices=sorted(MODELS), default="0.6b")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--sequence-parallel", action="store_true")
    p.add_argument("--fp32", action="store_true", help="fp32 parameters (default bf16)")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--pad-multiplier", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--fusions", action="store_true", help="Megatron's SwiGLU and bias-dropout-add fusions on")
    p.add_argument("--host-profile", help="cProfile one more step into this file, and count host-device syncs")
    p.add_argument("--cuda-graphs", action="store_true", help="train through --train-cuda-graphs")
    p.add_argument("--graph-check", action="store_true", help="first compare graphed and eager gradients")
    p.add_argument("--no-wgrad-fusion", action="store_true", help="Megatron's linears (no fused wgrad accumulation)")
    p.add_argument("--full-logits", action="store_true", help="eager: logits for every row, then select responses")
    p.add_argument("--build-all-first", action="store_true", help="build every micro-batch before the first forward")
    p.add_argument("--compile-layers", action="store_true", help="torch.compile each decoder layer (dynamic shapes)")
    p.add_argument("--profile", default=None, help="train: profile one more step, write the op table here")
    p.add_argument("--checkpoint", default=None, help="reuse this HF folder instead of writing a random one")
    p.add_argument("--save", default=None, help="logits: write the gathered logits here; checkpoint: the folder")
    p.add_argument("--compare", default=None, help="logits: compare with logits saved by an earlier run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --device cpu --model tiny for a logic check")
    if args.mode == "checkpoint":
        write_checkpoint(args.model, args.save, args.device)
        result = {"mode": "checkpoint", "model": args.model, "folder": args.save, "params": count_params(args.model)}
        print(json.dumps(result), flush=True)
        return result
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = args.checkpoint or tmp
        if args.checkpoint is None:
            write_checkpoint(args.model, hf_dir, "cuda" if args.device == "cuda" else "cpu")
        result = run_train(args, hf_dir) if args.mode == "train" else run_logits(args, hf_dir)
    from slime.megatron import _megatron_globals as mg

    if mg.world_rank() == 0:
        print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
    from slime.megatron import _megatron_globals

    _megatron_globals.destroy()
