"""The embedded default: `slime-train demo` trains, logs, saves, exports and the reward clearly rises."""

from __future__ import annotations

import json

import pytest

from slime.train.cli import main

pytestmark = pytest.mark.slow


def test_demo_reward_rises_and_artifacts_exist(tmp_path, capsys):
    out = tmp_path / "demo"
    # In-process and shorter than the real demo (40 rollouts, Ray) to keep CI quick; same recipe otherwise.
    assert main(["demo", "--output-dir", str(out), "--no-ray", "--num-rollout", "14", "--save-interval", "7"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rewards = [row["rollout/reward_mean"] for row in rows if "rollout/reward_mean" in row]
    assert len(rewards) == 14
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.15, rewards
    # Colocated: every step times the four memory switches and reports their share of the step.
    steps = [row for row in rows if "perf/step_time" in row]
    for row in steps:
        parts = ("release_rollout", "onload_train", "resume_rollout", "offload_train", "resume_rollout_kv")
        assert all(row[f"perf/{p}_time"] >= 0 for p in parts)
        assert row["perf/switch_time"] == pytest.approx(sum(row[f"perf/{p}_time"] for p in parts))
        assert 0 < row["perf/switch_fraction"] < 1
        # the trainer's own figures ride along: bytes moved each way and where the offload's time went
        assert row["perf/offload_bytes"] > 0 and row["perf/onload_bytes"] > 0
        assert row["perf/offload_copy_time"] + row["perf/offload_free_time"] <= row["perf/offload_train_time"]
    assert (out / "reward_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert (out / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "13"
    assert (out / "hf" / "rollout_13" / "config.json").exists()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "hf" / "rollout_13")
    assert "[demo] reward" in capsys.readouterr().out
