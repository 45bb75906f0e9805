"""Load run: N concurrent `/generate` requests through the real sglang-router to local CPU engines, none lost.

Starts `--num-engines` local servers (the tiny Qwen3 of slime_testkit, built locally) behind sglang-router on
127.0.0.1, then submits `--num-requests` requests at once through one `EngineClient` (a connection pool of
`--max-connections`, default one per request: that many sockets really are open at the same time) and waits
for every answer, bounded by `--timeout-s`. Each request has a random prompt of 4..`--max-input-len` tokens
and generates exactly `--output-len` tokens (`ignore_eos`, log-probs on, as the rollout asks).

Reported per round (`--rounds`, default 2; one JSON line with `--json`): completed / failed requests and the
engines' own count of finished requests (the proof that none was lost or served twice), wall time, requests/s and
output tok/s, latency p50 / p99 / max per request (all are submitted at once, so latency is mostly queueing), and
the resident memory (RSS) of the router, every engine and this client before, at peak (sampled every 0.25 s) and
after the round. Memory is bounded when the second round peaks no higher than the first.
The CI test `test_500_concurrent_generates_through_the_router_none_lost` (slime-sglang) is the same check at 500.

    uv run --frozen python benchmarks/bench_router_load.py                     # 10,000 requests, 2 engines
    uv run --frozen python benchmarks/bench_router_load.py --num-requests 2000 --num-engines 1 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from slime.sglang import EngineClient, EngineConfig
from slime.sglang.blocking_http import request_json
from slime.sglang.engine_group import EngineGroup, EngineGroupConfig
from slime.sglang.router import RouterConfig

MB = 1024 * 1024


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testing"))
    from slime_testkit.models import build_model

    return build_model(folder, "qwen3")


def tree_rss(pid: int, *, tree: bool = True) -> int:
    """RSS in bytes of process `pid` and (with `tree`) its descendants; 0 when it is gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)] if tree else [root]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def listener_pid(url: str) -> int:
    port = int(url.rsplit(":", 1)[1])
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise RuntimeError(f"nothing listens on {url}")


class MemorySampler:
    """RSS of named process trees, sampled in a thread: baseline, peak and last value of each.

    The client (this process) counts alone: the engines and the router are its children.
    """

    def __init__(self, pids: dict[str, int], period_s: float = 0.25) -> None:
        self.pids, self.period_s = pids, period_s
        self.first = {name: self._rss(name) for name in pids}
        self.peak = dict(self.first)
        self.last = dict(self.first)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def sample(self) -> None:
        for name in self.pids:
            self.last[name] = rss = self._rss(name)
            self.peak[name] = max(self.peak[name], rss)

    def _rss(self, name: str) -> int:
        return tree_rss(self.pids[name], tree=name != "client")

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()

    def report(self) -> dict[str, dict[str, float]]:
        def mb(values: dict[str, int], name: str) -> float:
            return round(values[name] / MB, 1)

        return {
            name: {"before_mb": mb(self.first, name), "peak_mb": mb(self.peak, name), "after_mb": mb(self.last, name)}
            for name in self.pids
        }


def finished_requests(urls: list[str]) -> int:
    return sum(request_json("GET", u + "/server_info")[1]["internal_states"][0]["num_finished_reqs"] for u in urls)


async def one(client: EngineClient, prompt: list[int], params: dict[str, Any]) -> tuple[float, int]:
    start = time.perf_counter()
    out = await client.generate(prompt, params)
    if len(out.output_ids) != params["max_new_tokens"] or len(out.output_log_probs) != len(out.output_ids):
        raise RuntimeError(f"incomplete answer: {len(out.output_ids)} tokens, finish reason {out.finish_reason}")
    return time.perf_counter() - start, len(out.output_ids)


async def load(url: str, args: argparse.Namespace, vocab: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    prompts = [[rng.randrange(4, vocab) for _ in range(rng.randint(4, args.max_input_len))]
               for _ in range(args.num_requests)]  # fmt: skip
    params = {"max_new_tokens": args.output_len, "temperature": 1.0, "ignore_eos": True}
    connections = args.max_connections or args.num_requests
    async with EngineClient(url, max_connections=connections) as client:
        await asyncio.gather(*(one(client, p, params) for p in prompts[:8]))  # warm-up, not counted
        start = time.perf_counter()
        results = await asyncio.wait_for(
            asyncio.gather(*(one(client, p, params) for p in prompts), return_exceptions=True), args.timeout_s
        )
        wall = time.perf_counter() - start
    latencies = sorted(r[0] for r in results if not isinstance(r, BaseException))
    errors = [repr(r)[:300] for r in results if isinstance(r, BaseException)]
    tokens = sum(r[1] for r in results if not isinstance(r, BaseException))
    return {
        "completed": len(latencies),
        "failed": len(errors),
        "first_errors": errors[:3],
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
        "output_tok_per_s": tokens / wall,
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "latency_p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None,
        "latency_max_s": latencies[-1] if latencies else None,
        "client_connections": connections,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-requests", type=int, default=10_000)
    parser.add_argument("--num-engines", type=int, default=2)
    parser.add_argument("--output-len", type=int, default=4)
    parser.add_argument("--max-input-len", type=int, default=24)
    parser.add_argument("--max-connections", type=int, default=0, help="client pool size (0: one per request)")
    parser.add_argument("--max-running-requests", type=int, default=256, help="per engine batch limit")
    parser.add_argument("--rounds", type=int, default=2, help="repeat the load to show memory does not grow")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="bound on each round")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_router_load_"))
    model = tiny_model(work / "model")
    threads = max(1, (os.cpu_count() or 1) // args.num_engines)
    engine = EngineConfig(model_path=str(model), backend="local", log_dir=str(work),
                          server_args=("--num-threads", str(threads), "--max-running-requests",
                                       str(args.max_running_requests)))  # fmt: skip
    config = EngineGroupConfig(engine=engine, num_engines=args.num_engines,
                               router=RouterConfig(policy="round_robin", log_dir=str(work)))  # fmt: skip
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    with EngineGroup(config) as group:
        pids = {"router": listener_pid(group.router_url), "client": os.getpid()}
        pids |= {f"engine{i}": listener_pid(u) for i, u in enumerate(group.engine_urls)}
        rounds = []
        for index in range(args.rounds):
            served_before = finished_requests(group.engine_urls)
            with MemorySampler(pids) as memory:
                result = asyncio.run(load(group.router_url, args, vocab, seed=index))
            served = finished_requests(group.engine_urls) - served_before - 8  # minus the warm-up
            rounds.append(result | {"engines_finished": served, "lost": args.num_requests - result["completed"],
                                    "memory": memory.report()})  # fmt: skip
    report = {"num_requests": args.num_requests, "num_engines": args.num_engines, "output_len": args.output_len,
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "rounds": rounds}  # fmt: skip
    if args.json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        if key != "rounds":
            print(f"{key:>20}: {value}")
    for index, result in enumerate(rounds):
        print(f"--- round {index}")
        for key, value in result.items():
            print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
