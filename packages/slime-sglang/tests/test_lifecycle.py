"""Process lifecycle: orphan-free shutdown (even when the parent is SIGKILLed), start-up failures, ports."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from slime.sglang.engine_process import EngineProcess
from slime.sglang.managed_process import ManagedProcess
from slime.sglang.ports import allocate_ports, is_port_free
from slime.sglang.server_args import EngineConfig
from slime.types import ConfigError, EngineError

SLEEPER = [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
           "'import time; time.sleep(600)']); time.sleep(600)"]  # fmt: skip
"""A server stand-in that also spawns a grandchild, so a whole process tree must be reaped."""


def wait_gone(pids: list[int], timeout_s: float = 60.0) -> list[int]:
    """The pids still alive (zombies count as gone) after waiting up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def tree(pid: int) -> list[int]:
    deadline = time.monotonic() + 60
    while len(psutil.Process(pid).children(recursive=True)) < 2:  # the sleeper and its grandchild
        assert time.monotonic() < deadline, "the supervised command never started"
        time.sleep(0.05)
    return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]


def test_stop_reaps_the_whole_tree() -> None:
    process = ManagedProcess(SLEEPER, name="sleeper", grace_s=2)
    process.start()
    pids = tree(process.pid)
    process.stop()
    assert wait_gone(pids) == []
    process.stop()  # idempotent


def test_parent_sigkill_leaves_no_orphans(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(f"""
        import time
        from slime.sglang.managed_process import ManagedProcess
        process = ManagedProcess({SLEEPER!r}, name="orphan-check", grace_s=2)
        process.start()
        print(process.pid, flush=True)
        time.sleep(600)
    """)
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        supervisor = int(parent.stdout.readline())
        pids = tree(supervisor)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert wait_gone(pids) == []
    finally:
        parent.kill()
        parent.stdout.close()


def test_bad_checkpoint_fails_with_the_log_tail(tmp_path: Path) -> None:
    engine = EngineProcess(EngineConfig(model_path=str(tmp_path / "missing"), backend="local", startup_timeout_s=300))
    with pytest.raises(EngineError) as info:
        engine.launch()
    message = str(info.value)
    assert "exited with code" in message and "missing" in message and "log" in message
    assert not engine.is_alive()


def test_health_timeout_stops_the_engine(tmp_path: Path) -> None:
    engine = EngineProcess(EngineConfig(model_path=str(tmp_path), backend="local", startup_timeout_s=0.5))
    with pytest.raises(EngineError, match=r"did not answer .*/health with 200 within"):
        engine.launch()
    assert wait_gone([engine.process.pid]) == []


def test_unknown_passthrough_flag_fails_before_launch() -> None:
    engine = EngineProcess(EngineConfig(model_path="x", backend="local", server_args=("--max-batch-sise", "4")))
    with pytest.raises(ConfigError, match="--sglang-max-batch-sise .* Did you mean --sglang-max-batch-size"):
        engine.launch()
    assert engine.port is None  # nothing was started


def test_ports_are_distinct_and_free() -> None:
    ports = allocate_ports(40) + allocate_ports(40)
    assert len(set(ports)) == 80 and all(is_port_free(p) for p in ports)
    assert os.getpid() > 0


@pytest.mark.skipif(importlib.util.find_spec("sglang") is not None, reason="sglang is installed here")
def test_sglang_backend_without_sglang_is_a_clear_error(tiny_qwen3_dir: Path) -> None:
    engine = EngineProcess(EngineConfig(model_path=str(tiny_qwen3_dir), backend="sglang", startup_timeout_s=300))
    with pytest.raises(ConfigError, match=r"backend 'sglang' needs sglang .* use the local backend"):
        engine.launch()
    assert engine.port is None
