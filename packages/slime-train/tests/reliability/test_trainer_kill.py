"""SIGKILL of the trainer in the middle of a checkpoint save: the previous checkpoint loads and resume gives the
very same next rollout.

The first run is the real job in a subprocess (`--no-ray`, so the trainer is that process) whose DCP save of
rollout 1 is followed by a SIGKILL before the save is published: the folder is half-written, the trackers still
name rollout 0. A sample hook records every generated sample. The resumed run (`--load`) must start at rollout
1 from checkpoint 0, and, with `--sglang-enable-deterministic-inference` (per-sample seeds), generate exactly
the samples the killed run generated for rollout 1: same indices, same tokens, same log-probs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from slime.train.cli import run_training
from slime.train.run_state import load_run_state

pytestmark = pytest.mark.slow

HOOK = '''
import json
import os


def record(args, sample, *, rollout_id, evaluation):
    """Append what was generated (one JSON line per sample) to $RELIABILITY_RECORD."""
    row = {"rollout": rollout_id, "index": sample.index, "tokens": sample.tokens,
           "logprobs": sample.rollout_log_probs, "versions": sample.weight_versions}
    with open(os.environ["RELIABILITY_RECORD"], "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\\n")
'''

DIE_DURING_SAVE = """
import os
import signal
import sys

import torch.distributed.checkpoint as dcp

real_save = dcp.save


def save_then_die(state_dict, *args, checkpoint_id=None, **kwargs):
    result = real_save(state_dict, *args, checkpoint_id=checkpoint_id, **kwargs)
    if checkpoint_id is not None and os.path.basename(str(checkpoint_id)) == ".tmp_iter_0000001":
        os.kill(os.getpid(), signal.SIGKILL)  # shards written, nothing published yet
    return result


dcp.save = save_then_die
from slime.train.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
"""


def _records(path: Path, rollout: int) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted((r for r in rows if r["rollout"] == rollout), key=lambda r: r["index"])


def _engines_of(model: Path) -> list[int]:
    """Live processes serving `model` (zombies excluded)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(model) in " ".join(proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


def test_sigkill_during_checkpoint_save_then_resume_gives_the_same_next_rollout(
    demo_files, job_flags, tmp_path, monkeypatch
):
    model = Path(shutil.copytree(demo_files[0], tmp_path / "model"))  # its own path, to find its engines by
    (tmp_path / "reliability_record.py").write_text(HOOK)
    killer = tmp_path / "die_during_save.py"
    killer.write_text(DIE_DURING_SAVE)
    flags = job_flags(model, demo_files[1], tmp_path, "--num-rollout", "2", "--no-ray",
                      "--sglang-enable-deterministic-inference",
                      "--rollout-sample-hook-path", "reliability_record:record")  # fmt: skip
    first, resumed = tmp_path / "first.jsonl", tmp_path / "resumed.jsonl"
    env = {**os.environ, "RELIABILITY_RECORD": str(first),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    done = subprocess.run([sys.executable, str(killer), *flags], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]

    ckpt = tmp_path / "ckpt"
    assert (ckpt / ".tmp_iter_0000001").is_dir() and not (ckpt / "iter_0000001").exists()  # killed mid-save
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "0"
    assert load_run_state(ckpt)["rollout_id"] == 0
    deadline = time.monotonic() + 60
    while _engines_of(model) and time.monotonic() < deadline:  # the killed job's engines and router follow it
        time.sleep(0.2)
    assert _engines_of(model) == []

    monkeypatch.setenv("RELIABILITY_RECORD", str(resumed))
    monkeypatch.syspath_prepend(str(tmp_path))
    history = run_training([*flags, "--load", str(ckpt)])
    assert [step for step, m in history.history if "train/loss" in m] == [1]  # resumed after checkpoint 0

    before, after = _records(first, 1), _records(resumed, 1)
    assert [r["index"] for r in after] == [r["index"] for r in before] == list(range(8, 16))
    assert [r["tokens"] for r in after] == [r["tokens"] for r in before]
    assert [r["versions"] for r in after] == [r["versions"] for r in before] == [["1"]] * 8
    for old, new in zip(before, after, strict=True):
        assert new["logprobs"] == pytest.approx(old["logprobs"], abs=1e-5)
    assert len({tuple(r["tokens"]) for r in after}) > 1  # sampled, not one fixed answer
    assert (ckpt / "iter_0000001").is_dir() and not (ckpt / ".tmp_iter_0000001").exists()
    assert load_run_state(ckpt)["rollout_id"] == 1
