"""Run a job of `worker.py` steps in a world of real processes (gloo on 127.0.0.1), torchrun's environment.

Each rank is a fresh `python worker.py`, so megatron, the CPU shim and the process group never touch the pytest
process. The working directory is the repository root (the steps name `tools/...` as the seeds do).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from slime_testkit.ports import rendezvous_port

WORKER = Path(__file__).with_name("worker.py")
REPO_ROOT = Path(__file__).resolve().parents[4]


def run_job(steps: list, world_size: int, out_dir: Path, *, timeout: float = 900) -> None:
    """Run `steps` on `world_size` ranks; raise `AssertionError` with every rank's log tail if one fails."""
    out_dir.mkdir(parents=True, exist_ok=True)
    job = out_dir / "job.json"
    job.write_text(json.dumps(steps))
    port = str(rendezvous_port())
    procs = []
    for rank in range(world_size):
        env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        if world_size > 1:  # torchrun's variables; a world of one is a plain `python tools/...` run
            env |= {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size)}
            env |= {"LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        log = open(out_dir / f"rank{rank}.log", "w")  # noqa: SIM115  # closed below
        cmd = [sys.executable, str(WORKER), str(job), str(out_dir)]
        procs.append((subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT), log))
    codes: list[int | str] = []
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
        raise AssertionError(f"job in {out_dir} failed on world {world_size}:\n{tails}")
