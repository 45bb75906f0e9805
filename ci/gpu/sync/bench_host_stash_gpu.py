"""GPU bench for `slime.sync.HostStash`: what a colocated switch costs, piece by piece (issue #13's 10 % goal).

On one CUDA device it builds storages shaped like a Qwen3-0.6B trainer's (bf16 weights: one 1.2 GB buffer;
optimizer state: fp32 main weights and two Adam moments, 3 x 310 tensors, 7.2 GB) plus some cached activation
blocks, and times:

- `sync`: `stash(weights + state)` and `restore()`: D2H / H2D GB/s through the reused pinned buffers, and the
  free (resize + `empty_cache`) part;
- `behind`: `stash_behind(state)`, then a stand-in for the weight push (D2D copies of the weights, the current
  stream synchronized, as `slime.sync.shared_memory` does), then `stash(state)`: how long the offload still waits
  for the early copies (`wait_behind`), against the push's length;
- `restore_behind`: `restore()` of the weights + `restore_behind()` of the state, then a stand-in forward/backward
  (matmuls) and `wait()`: how much of the state's H2D the compute hid.

Prints one JSON object. Needs only torch and the repository's packages on PYTHONPATH:
`PYTHONPATH=$(ls -d packages/*/src|paste -sd:) python3 ci/gpu/sync/bench_host_stash_gpu.py`.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from slime.sync.host_stash import HostStash, distinct_storages


def _tensors(args: argparse.Namespace) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    weights = [torch.randn(int(args.weight_gb * 2**30) // 2, dtype=torch.bfloat16, device="cuda")]
    per = int(args.state_gb * 2**30) // 4 // args.state_tensors
    state = [torch.randn(per, device="cuda") for _ in range(args.state_tensors)]
    return weights, state


def _timed(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def _push_stand_in(weights: list[torch.Tensor], copies: int) -> None:
    out = torch.empty_like(weights[0])
    for _ in range(copies):
        out.copy_(weights[0])
    torch.cuda.current_stream().synchronize()


def main() -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weight-gb", type=float, default=1.2)
    p.add_argument("--state-gb", type=float, default=7.2)
    p.add_argument("--state-tensors", type=int, default=930)
    p.add_argument("--activation-gb", type=float, default=8.0, help="cached blocks empty_cache must give back")
    p.add_argument("--push-copies", type=int, default=40, help="D2D copies of the weights standing in for a push")
    args = p.parse_args()
    weights, state = _tensors(args)
    w_st, s_st = distinct_storages(weights), distinct_storages(state)
    w_bytes, s_bytes = sum(s.nbytes() for s in w_st), sum(s.nbytes() for s in s_st)
    main_stash, late = HostStash(), HostStash()
    out: dict[str, object] = {"device": torch.cuda.get_device_name(), "weight_bytes": w_bytes, "state_bytes": s_bytes}

    late.stash(s_st), main_stash.stash(w_st)  # first: allocates the pinned buffers (not what a step pays)
    late.restore(), main_stash.restore()
    blocks = [torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda") for _ in range(int(args.activation_gb * 16))]
    del blocks  # cached by the allocator, as a step's activations are
    t = _timed(lambda: (late.stash(s_st), main_stash.stash(w_st)))
    out["sync_stash_s"] = t
    out["sync_stash_gb_per_s"] = (w_bytes + s_bytes) / t / 1e9
    out["sync_stash_timings"] = {"state": late.timings, "weights": main_stash.timings}
    t = _timed(lambda: (main_stash.restore(), late.restore()))
    out["sync_restore_s"] = t
    out["sync_restore_gb_per_s"] = (w_bytes + s_bytes) / t / 1e9

    torch.cuda.synchronize()
    start = time.perf_counter()
    late.stash_behind(s_st)
    queued = time.perf_counter()
    _push_stand_in(weights, args.push_copies)
    pushed = time.perf_counter()
    late.stash(s_st)
    main_stash.stash(w_st)
    torch.cuda.synchronize()
    out["behind"] = {
        "queue_s": queued - start,
        "push_stand_in_s": pushed - queued,
        "offload_after_push_s": time.perf_counter() - pushed,
        "state_timings": late.timings,
        "weight_timings": main_stash.timings,
    }

    x = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    compute = _timed(lambda: [x @ x for _ in range(100)])
    main_stash.restore()
    torch.cuda.synchronize()
    start = time.perf_counter()
    late.restore_behind()
    queued = time.perf_counter() - start  # host time of the call: allocation + queueing (`restore_timings`)
    [x @ x for _ in range(100)]
    late.wait()
    torch.cuda.synchronize()
    out["restore_behind"] = {
        "compute_alone_s": compute,
        "compute_with_restore_s": time.perf_counter() - start,
        "state_h2d_alone_s": s_bytes / out["sync_restore_gb_per_s"] / 1e9,
        "restore_behind_call_s": queued,
        "restore_behind_timings": late.restore_timings,
    }
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
