"""Profile one `FSDPPolicy.compute_log_probs` and one `train` call on the recipe's Qwen3-0.6B shape (torch.profiler).

Prints the top operators by device time and by host time to stdout. Same environment as bench_fsdp_gpu.py:

    PYTHONPATH=$(ls -d packages/*/src | paste -sd:) python ci/gpu/fsdp/profile_fsdp_gpu.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from slime.fsdp import FSDPConfig, FSDPPolicy, init_distributed


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_fsdp_gpu", Path(__file__).with_name("bench_fsdp_gpu.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="0.6b")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    bench = load_bench()
    info = init_distributed("cuda")
    batch = bench.make_batch(args.samples, 1024, bench.MODELS[args.model][0])
    with tempfile.TemporaryDirectory() as ckpt:
        bench.write_checkpoint(args.model, ckpt)
        policy = FSDPPolicy(
            FSDPConfig(
                hf_checkpoint=ckpt,
                use_dynamic_batch_size=True,
                max_tokens_per_gpu=4096,
                device="cuda",
                compile=args.compile,
            ),
            info,
        )
    policy.train(0, batch)
    policy.compute_log_probs(batch)
    for name, fn in (("log-probs", lambda: policy.compute_log_probs(batch)), ("train", lambda: policy.train(0, batch))):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        print(f"==== {name}: {time.perf_counter() - start:.3f} s (profiled)", flush=True)
        table = prof.key_averages()
        print(table.table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=60))
        print(table.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=60))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
