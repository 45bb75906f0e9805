"""The GPU recipe `ci/gpu/sync/bench_sync_gpu.py`: its CPU fallback (shared memory + gloo) runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "ci" / "gpu" / "sync" / "bench_sync_gpu.py"


def _run(*args: str) -> dict:
    # As on the GPU image: no uv, the repository's packages on PYTHONPATH.
    path = os.pathsep.join(str(p) for p in sorted((ROOT / "packages").glob("*/src")))
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_cpu_fallback_reports_every_row() -> None:
    result = _run("--device", "cpu", "--models", "tiny", "--repeats", "1")
    assert result["gpus"] == 0 and result["copy_gb_per_s"] > 0
    rows = result["rows"]
    assert [(r["transport"], r["backend"], r["bit_exact"]) for r in rows] == [
        ("colocated", "shm", True),
        ("broadcast", "gloo", True),
    ]
    for row in rows:
        assert row["bytes"] > 0 and row["seconds_median"] > 0 and row["floor_s"] > 0
        assert row["ratio_to_floor"] == pytest.approx(row["seconds_median"] / row["floor_s"])
    assert rows[0]["goal_s"] == pytest.approx(2 * rows[0]["floor_s"] + 0.05)


@pytest.mark.gpu  # the root conftest skips it without CUDA
def test_cuda_tiny() -> None:
    result = _run("--models", "tiny", "--repeats", "2", "--copy-mb", "256")
    assert all(r["bit_exact"] for r in result["rows"])
    assert {r["backend"] for r in result["rows"]} <= {"cuda_ipc", "nccl"}
