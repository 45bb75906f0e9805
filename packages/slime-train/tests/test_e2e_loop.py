"""End to end on CPU, in one process (`--no-ray`): real local engines behind the real router, the fsdp
trainer, shared-memory weight sync; first-step invariants, both loops, checkpoint + resume."""

from __future__ import annotations

import json
import re

import pytest

from slime.train.cli import run_training
from slime.train.run_state import load_run_state

pytestmark = pytest.mark.slow


def test_sync_loop_first_step_invariants_and_resume(demo_files, job_flags, tmp_path, capsys):
    model, prompts = demo_files
    history = run_training(job_flags(model, prompts, tmp_path, "--num-rollout", "2", "--no-ray"))
    first = dict(history.history[1][1])
    # Step 0 trains on samples from the very weights it recomputes: ratios are 1, no KL, no clipping.
    assert first["train/ppo_kl"] == pytest.approx(0.0, abs=1e-6)
    assert first["train/pg_clipfrac"] == 0.0
    assert first["train/train_rollout_logprob_abs_diff"] < 1e-4
    assert first["rollout/num_samples"] == 8.0
    state = load_run_state(tmp_path / "ckpt")
    assert state["rollout_id"] == 1 and state["data_source"]["sample_index"] == 16
    # Resume: the next run starts at rollout 2 with the saved data cursor.
    capsys.readouterr()
    resumed = run_training(job_flags(
        model, prompts, tmp_path, "--num-rollout", "3", "--no-ray", "--load", str(tmp_path / "ckpt"),
        "--progress", "always",
    ))  # fmt: skip
    steps = [step for step, m in resumed.history if "rollout/reward_mean" in m]
    assert steps == [2]
    assert load_run_state(tmp_path / "ckpt")["data_source"]["sample_index"] == 24
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in lines if "rollout/reward_mean" in row] == [0, 1, 2]
    # The progress bars' last frame: the run bar counts rollout 2 of 3 trained (resumed at 2), and the rollout
    # bar, fed by the rollout's live counters, shows its 2 groups kept and 8 samples back.
    out = capsys.readouterr().out
    assert re.search(r"run\s.*3/3.*rollout 2: done", out), out[-2000:]
    assert re.search(r"rollout 2\s.*2/2.*8 samples back", out), out[-2000:]


def test_async_loop_runs_and_bounds_staleness(demo_files, job_flags, tmp_path):
    model, prompts = demo_files
    history = run_training(job_flags(model, prompts, tmp_path, "--num-rollout", "3", "--no-ray"), async_loop=True)
    steps = [step for step, m in history.history if "rollout/reward_mean" in m]
    assert steps == [0, 1, 2]
