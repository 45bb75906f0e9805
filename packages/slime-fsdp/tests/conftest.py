"""Fixtures of the slime.fsdp tests: a single-process gloo group, random rollout batches, a 2-rank launcher.

Rollout batches are random token sequences (the tiny models are random too), so any content will do; what
matters is that every layout case appears: several samples per micro-batch, masked tool tokens, groups.
"""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from slime_testkit.ports import rendezvous_port

WORKER = Path(__file__).with_name("dist_worker.py")


@pytest.fixture(scope="session")
def dist_ws1() -> Any:
    """This test process as a world of one (gloo over an in-memory store), on one intra-op thread.

    One thread: the tiny models gain nothing from more, and OpenMP spinning on a shared 2-core machine made
    every matmul ~10x slower in CPU time.
    """
    import torch

    from slime.fsdp import init_distributed

    torch.set_num_threads(1)
    return init_distributed("cpu")


def random_batch(
    num_samples: int = 8,
    *,
    seed: int = 0,
    group_size: int = 4,
    prompt_len: tuple[int, int] = (2, 6),
    response_len: tuple[int, int] = (1, 9),
    vocab: int = 256,
    with_tool_tokens: bool = True,
    rollout_id: int = 0,
) -> Any:
    """A `RolloutBatch` of random samples; every third sample has a masked (tool) span when asked."""
    from slime.types import RolloutBatch, TrainSample

    rng = random.Random(seed)
    samples = []
    for i in range(num_samples):
        p, r = rng.randint(*prompt_len), rng.randint(*response_len)
        mask = [1] * r
        if with_tool_tokens and i % 3 == 2 and r >= 3:
            mask[1 : r - 1] = [0] * (r - 2)
        samples.append(
            TrainSample(
                tokens=tuple(rng.randrange(vocab) for _ in range(p + r)),
                response_length=r,
                loss_mask=tuple(mask),
                reward=float(rng.random() < 0.5) + 0.1 * i,
                group_index=i // group_size,
                index=i,
            )
        )
    return RolloutBatch(rollout_id=rollout_id, samples=tuple(samples), n_samples_per_prompt=group_size)


@pytest.fixture(scope="session")
def make_batch() -> Callable[..., Any]:
    """`random_batch` as a fixture."""
    return random_batch


def launch_world(job: list[dict[str, Any]], out_dir: Path, world_size: int = 2, timeout_s: float = 300.0) -> Any:
    """Run `dist_worker.py` on `world_size` real processes (gloo on 127.0.0.1); return rank 0's list of results."""
    out_dir.mkdir(parents=True, exist_ok=True)
    job_file = out_dir / "job.pkl"
    job_file.write_bytes(pickle.dumps(job))
    port = rendezvous_port()  # below the ephemeral range: the ranks bind it seconds later
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world_size)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(job_file), str(out_dir)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(world_size)
    ]
    logs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout_s)
        logs.append(out.decode(errors="replace"))
    if any(p.returncode != 0 for p in procs):
        raise AssertionError("a worker failed:\n" + "\n---\n".join(log[-4000:] for log in logs))
    import torch

    return torch.load(out_dir / "result.pt", weights_only=False)


@pytest.fixture(scope="session")
def launch() -> Callable[..., Any]:
    """`launch_world` as a fixture."""
    return launch_world
