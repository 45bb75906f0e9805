"""The seeds' multi-node launch, simulated on one machine over loopback: `ray start --head`, a second
node joins, then `ray job submit ... -- python3 train.py <slime flags>` runs an e2e GRPO job."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from slime.train.actors import RAY_ENV_DEFAULTS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    ray_cli = str(Path(sys.executable).with_name("ray"))
    return subprocess.run([ray_cli, *args], env=env, text=True, capture_output=True, timeout=timeout, check=False)


@pytest.fixture
def ray_cluster():
    # Ray's unix sockets live under --temp-dir and must stay within 107 bytes: use a short folder.
    temp_dir = tempfile.mkdtemp(prefix="ray")
    env = {**os.environ, **RAY_ENV_DEFAULTS, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    gcs_port, dash_port = _free_port(), _free_port()
    head = _ray(
        "start",
        "--head",
        "--port",
        str(gcs_port),
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "1",
        "--include-dashboard",
        "true",
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dash_port),
        "--disable-usage-stats",
        "--temp-dir",
        temp_dir,
        env=env,
    )
    assert head.returncode == 0, head.stdout + head.stderr
    try:
        join = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "support" / "join_ray_node.py"), f"127.0.0.1:{gcs_port}", "1"],
            env=env,
            text=True,
            capture_output=True,
            timeout=300,
        )
        assert join.returncode == 0, join.stdout + join.stderr
        for _ in range(30):  # `ray status` reports the autoscaler's last snapshot, which lags the join
            status = _ray("status", "--address", f"127.0.0.1:{gcs_port}", env=env)
            if status.stdout.count("node_") == 2:
                break
            time.sleep(2)
        assert status.stdout.count("node_") == 2, status.stdout
        yield env, f"http://127.0.0.1:{dash_port}", Path(temp_dir)
    finally:
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_cluster(temp_dir: str) -> None:
    """Kill only this cluster's processes (their command lines name its temp dir); `ray stop` would kill
    every Ray process on the machine, other tests' clusters included."""
    import psutil

    victims = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(temp_dir in part for part in proc.info["cmdline"] or ()):
            victims.append(proc)
    for proc in victims:
        proc.kill()
    psutil.wait_procs(victims, timeout=30)


def test_ray_job_submit_runs_train_py(ray_cluster, demo_files, job_flags, tmp_path):
    env, dashboard, temp_dir = ray_cluster
    model, prompts = demo_files
    # Two trainer ranks (FSDP over gloo): the ranks meet at the rendezvous address found in rank 0's bundle.
    flags = job_flags(model, prompts, tmp_path, "--num-rollout", "2", "--actor-num-gpus-per-node", "2",
                      "--progress", "always")  # fmt: skip
    command = ["job", "submit", "--address", dashboard, "--", sys.executable, str(REPO / "train.py"), *flags]
    deadline = time.monotonic() + 420  # a busy 2-core machine has taken over 2 min to start the job agent
    while True:
        result = _ray(*command, env=env, timeout=900)
        # The head's job agent can come up after `ray start` returns; Ray's own message says to retry.
        if "No available agent to submit job" not in result.stdout + result.stderr or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    trained = [row for row in rows if "train/loss" in row]
    assert [row["step"] for row in trained] == [0, 1]
    assert trained[0]["train/ppo_kl"] == pytest.approx(0.0, abs=1e-6)
    assert trained[0]["train/train_rollout_logprob_abs_diff"] < 1e-4
    # Two TrainerHost actors ran (each Ray worker's log names the actor class it hosted).
    # (`session_latest` is a link to the session folder: resolve to count each file once.)
    files = {p.resolve() for p in temp_dir.glob("session_*/logs/worker-*.out")}
    logs = [p.read_text(errors="replace") for p in files]
    assert sum(":actor_name:TrainerHost" in log for log in logs) == 2, [log[:200] for log in logs]
    # The rollout bar was fed from the rollout actor while `generate` ran (its `progress` concurrency group).
    assert re.search(r"rollout 1\s.*2/2.*8 samples back", result.stdout), result.stdout[-3000:]
