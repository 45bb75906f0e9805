"""Benchmark generation through the real sglang-router: requests/s and output tok/s of slime's client.

N engines (local servers on CPU by default, or stock SGLang with `--backend sglang` on a GPU) behind one
sglang-router; `--num-prompts` random-token prompts of exactly `--input-len` tokens, each generating exactly
`--output-len` tokens (`ignore_eos`), all sent at once through `EngineClient` (one aiohttp session) with
`return_logprob` on (unless `--no-logprob`), as the rollout does. One warm-up round of 8 requests is not
timed. The figures are wall time from the first request to the last answer, so they include routing, JSON and
the client.

On a GPU, `--decode-floor` prints the weights+KV memory-bandwidth floor of that workload (see
shared/reference/peers-and-performance.md 2f) for the served model's config, and `--offline-json` reads the
result line of `python -m sglang.bench_offline_throughput` run on the same prompts/lengths, to print our
output tok/s as a fraction of it (the goal is >= 0.95).

    uv run --frozen python benchmarks/bench_engine.py                      # CPU: tiny Qwen3, 2 local servers
    uv run --frozen python benchmarks/bench_engine.py --json --num-prompts 512 --output-len 32
    python3 benchmarks/bench_engine.py --backend sglang --model-path /root/qwen3-0.6b-rand --num-engines 1 \\
        --input-len 128 --output-len 1024 --server-args "--attention-backend triton" --decode-floor \\
        --offline-json $OUT/results.jsonl                                  # GPU (ci/gpu/sglang/device.sh)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from slime.sglang import EngineClient, EngineConfig
from slime.sglang.engine_group import EngineGroup, EngineGroupConfig
from slime.sglang.router import RouterConfig


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testing"))
    from slime_testkit.models import build_model

    return build_model(folder, "qwen3")


async def run_round(
    client: EngineClient, prompts: list[list[int]], output_len: int, args: argparse.Namespace
) -> tuple[float, int]:
    params = {"max_new_tokens": output_len, "temperature": args.temperature, "ignore_eos": True}
    start = time.perf_counter()
    outputs = await asyncio.gather(*(client.generate(p, params, return_logprob=args.logprob) for p in prompts))
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(o.output_ids) for o in outputs)


async def bench(url: str, args: argparse.Namespace, vocab: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    prompts = [
        torch.randint(4, min(vocab, 32000), (args.input_len,), generator=g).tolist() for _ in range(args.num_prompts)
    ]
    async with EngineClient(url, max_connections=max(1024, args.num_prompts)) as client:
        await run_round(client, prompts[:8], 4, args)  # warm-up: connections, first-call paths
        elapsed, tokens = await run_round(client, prompts, args.output_len, args)
    return {"seconds": elapsed, "output_tokens": tokens, "requests_per_s": args.num_prompts / elapsed,
            "output_tok_per_s": tokens / elapsed}  # fmt: skip


def decode_floor(model_path: str, batch: int, input_len: int, output_len: int, bw: float, flops: float) -> float:
    """Output tok/s floor: per step, max(weights + KV bytes read / bandwidth, matmul + attention FLOPs / peak)."""
    config = json.loads((Path(model_path) / "config.json").read_text())
    hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    attn = hidden * head_dim * (heads * 2 + kv_heads * 2)
    params = layers * (attn + 3 * hidden * config["intermediate_size"]) + vocab * hidden  # LM head counted once
    kv_bytes_per_token = 2 * layers * kv_heads * head_dim * 2  # bf16 K and V
    seconds = 0.0
    for step in range(output_len):
        context = input_len + step
        memory = (2 * params + batch * context * kv_bytes_per_token) / bw
        compute = (2 * params * batch + 4 * layers * heads * head_dim * batch * context) / flops
        seconds += max(memory, compute)
    return batch * output_len / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="local", choices=["local", "sglang"])
    parser.add_argument("--model-path", default=None, help="HF folder (default: a fresh tiny Qwen3)")
    parser.add_argument("--num-engines", type=int, default=2)
    parser.add_argument("--num-prompts", type=int, default=256)
    parser.add_argument("--input-len", type=int, default=16)
    parser.add_argument("--output-len", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (as bench_offline_throughput)")
    parser.add_argument("--no-logprob", dest="logprob", action="store_false", help="do not ask for log-probs")
    parser.add_argument("--server-args", default="", help='extra engine flags, e.g. "--attention-backend triton"')
    parser.add_argument("--decode-floor", action="store_true", help="print the H100 bandwidth/compute floor")
    parser.add_argument("--offline-json", default=None, help="sglang.bench_offline_throughput --result-filename")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        model_path = args.model_path or str(tiny_model(Path(scratch) / "tiny_qwen3"))
        engine = EngineConfig(model_path=model_path, backend=args.backend, startup_timeout_s=900,
                              server_args=tuple(shlex.split(args.server_args)))  # fmt: skip
        config = EngineGroupConfig(
            engine=engine, num_engines=args.num_engines, router=RouterConfig(policy="round_robin")
        )
        started = time.perf_counter()
        with EngineGroup(config) as group:
            startup = time.perf_counter() - started
            vocab = json.loads((Path(model_path) / "config.json").read_text())["vocab_size"]
            result: dict[str, Any] = asyncio.run(bench(group.router_url, args, vocab))
    result.update(backend=args.backend, num_engines=args.num_engines, num_prompts=args.num_prompts,
                  temperature=args.temperature, return_logprob=args.logprob,
                  input_len=args.input_len, output_len=args.output_len, startup_s=startup,
                  machine=platform.machine(), torch=torch.__version__)  # fmt: skip
    if args.decode_floor:
        for name, bw, flops in (("floor_peak", 3.35e12, 990e12), ("floor_measured", 3.0e12, 798e12)):
            result[name + "_tok_per_s"] = decode_floor(
                model_path, args.num_prompts, args.input_len, args.output_len, bw, flops
            )
            result[name + "_fraction"] = result["output_tok_per_s"] / result[name + "_tok_per_s"]
    if args.offline_json:
        offline = json.loads(Path(args.offline_json).read_text().strip().splitlines()[-1])
        result["offline_output_tok_per_s"] = offline["output_throughput"]
        result["fraction_of_offline"] = result["output_tok_per_s"] / offline["output_throughput"]
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>28}: {value:.4g}" if isinstance(value, float) else f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
