"""Benchmark the client's side of a rollout batch's answers: decoding and parsing `/generate` JSON with log-probs.

A GPU rollout batch answers at nearly the same moment (256 requests x 1024 tokens in the like-for-like bench of
issue #6), so the client parses ~12 MB of JSON at the end of the batch, on the critical path. This prints the
seconds to turn `--requests` answers of `--output-len` tokens (SGLang 0.5.17's shape, `[logprob, id, null]` per
token) into `GenerateOutput`s: stdlib `json` vs `orjson` (what `EngineClient` uses), each followed by
`parse_generate_response`, one answer at a time as the client sees them. Random tokens and log-probs; no engine.

    uv run --frozen --all-packages python benchmarks/bench_answer_parse.py
"""

from __future__ import annotations

import argparse
import json
import random
import time

import orjson

from slime.sglang.protocol import parse_generate_response


def answer_bytes(output_len: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    ids = [rng.randrange(151936) for _ in range(output_len)]
    meta = {
        "finish_reason": {"type": "length", "length": output_len},
        "prompt_tokens": 128,
        "weight_version": "0",
        "output_token_logprobs": [[-rng.random() * 5, t, None] for t in ids],
    }
    return json.dumps({"text": "x" * (4 * output_len), "output_ids": ids, "meta_info": meta}).encode()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=256)
    p.add_argument("--output-len", type=int, default=1024)
    args = p.parse_args()
    raw = answer_bytes(args.output_len)
    print(f"{args.requests} answers x {len(raw) / 1e3:.1f} kB ({args.output_len} tokens with log-probs)")
    for name, loads in (("json", lambda b: json.loads(b.decode())), ("orjson", orjson.loads)):
        # as the client does: each answer is decoded and parsed when it arrives, and only the output is kept
        started = time.perf_counter()
        outputs = [parse_generate_response(loads(raw), expect_logprobs=True) for _ in range(args.requests)]
        seconds = time.perf_counter() - started
        tokens = sum(len(o.output_ids) for o in outputs)
        print(f"{name:>6}: {seconds:.3f} s ({tokens / seconds / 1e6:.2f} M tokens/s)")


if __name__ == "__main__":
    main()
