"""Start worlds of real processes (gloo on 127.0.0.1) running scenarios of `scenarios.py`, and read their results.

Each rank is a fresh `python worker.py` with torchrun's environment variables, so megatron, the CPU shim and the
process group never touch the pytest process. `start_scenario` returns at once (several worlds can run side by
side); `wait_scenario` polls the ranks' marker files (`rank<r>.done` / `rank<r>.failed`, written by the workers)
and returns rank 0's `result.pt`. Any process may wait, not only the one that started the world.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from slime_testkit.ports import rendezvous_port

WORKER = Path(__file__).with_name("worker.py")
_STARTED: list[subprocess.Popen] = []
"""Every rank this process started: kept referenced (and reaped by `wait_scenario`) until it exits."""


def start_scenario(name: str, world_size: int, out_dir: Path, **params: Any) -> list[subprocess.Popen]:
    """Launch `scenarios.<name>(out_dir=..., **params)` on `world_size` ranks; returns the rank processes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    job = out_dir / "job.pkl"
    job.write_bytes(pickle.dumps({"scenario": name, "params": params, "world_size": world_size}))
    port = str(rendezvous_port())
    procs = []
    for rank in range(world_size):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
                   PYTHONUNBUFFERED="1")  # fmt: skip
        with open(out_dir / f"rank{rank}.log", "w") as log:
            procs.append(subprocess.Popen([sys.executable, str(WORKER), str(job), str(out_dir)], env=env,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
    _STARTED.extend(procs)
    return procs


def _reap() -> None:
    for proc in list(_STARTED):
        if proc.poll() is not None:
            _STARTED.remove(proc)


def wait_all_started(timeout: float = 1800) -> None:
    """Wait for (then kill) every rank this process started: call once its worlds' results were read."""
    deadline = time.monotonic() + timeout
    for proc in list(_STARTED):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _STARTED.remove(proc)


def wait_scenario(out_dir: Path, world_size: int, *, timeout: float = 1500) -> dict:
    """Block until every rank of the world in `out_dir` has finished; rank 0's result, or AssertionError with logs."""
    deadline = time.monotonic() + timeout
    while True:
        finished = [(out_dir / f"rank{r}.done").exists() or (out_dir / f"rank{r}.failed").exists()
                    for r in range(world_size)]  # fmt: skip
        failed = any((out_dir / f"rank{r}.failed").exists() for r in range(world_size))
        _reap()
        if all(finished) or failed or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if not all((out_dir / f"rank{r}.done").exists() for r in range(world_size)):
        tails = "\n".join(f"--- rank {r} ---\n" + _tail(out_dir / f"rank{r}.log") for r in range(world_size))
        state = "failed" if failed else "timed out"
        raise AssertionError(f"test world in {out_dir} {state}:\n{tails}")
    import torch

    return torch.load(out_dir / "result.pt", weights_only=False)


def run_scenario(name: str, world_size: int, out_dir: Path, *, timeout: float = 1500, **params: Any) -> dict:
    """`start_scenario` then `wait_scenario`."""
    start_scenario(name, world_size, out_dir, **params)
    return wait_scenario(out_dir, world_size, timeout=timeout)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"
