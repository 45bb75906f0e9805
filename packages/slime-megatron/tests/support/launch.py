"""Start a world of real processes (gloo on 127.0.0.1) running one scenario of `scenarios.py`, and read its result.

Each rank is a fresh `python worker.py` with torchrun's environment variables, so megatron, the CPU shim and
the process group never touch the pytest process. Rank 0 writes `<out_dir>/result.pt`.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_scenario(name: str, world_size: int, out_dir: Path, *, timeout: float = 900, **params: Any) -> dict:
    """Run `scenarios.<name>(**params)` on `world_size` ranks; returns rank 0's result dict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    job = out_dir / "job.pkl"
    job.write_bytes(pickle.dumps({"scenario": name, "params": params}))
    port = str(_free_port())
    procs = []
    for rank in range(world_size):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world_size),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            OMP_NUM_THREADS="1",
            TOKENIZERS_PARALLELISM="false",
        )
        log = open(out_dir / f"rank{rank}.log", "w")  # noqa: SIM115  # closed below
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, str(WORKER), str(job), str(out_dir)], env=env, stdout=log, stderr=subprocess.STDOUT
                ),
                log,
            )
        )
    codes = []
    for proc, log in procs:
        try:
            codes.append(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            for p, _ in procs:
                p.kill()
            codes.append("timeout")
        log.close()
    if any(c != 0 for c in codes):
        tails = "\n".join(
            f"--- rank {r} ({c}) ---\n" + (out_dir / f"rank{r}.log").read_text()[-4000:] for r, c in enumerate(codes)
        )
        raise AssertionError(f"scenario {name} failed on world {world_size}:\n{tails}")
    import torch

    return torch.load(out_dir / "result.pt", weights_only=False)
