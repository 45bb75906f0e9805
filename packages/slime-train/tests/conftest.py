"""Shared fixtures of slime.train's tests: the demo's tiny checkpoint and prompt file, built once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory):
    from slime.train.demo.checkpoint import build_checkpoint
    from slime.train.demo.task import make_prompts

    root = tmp_path_factory.mktemp("demo")
    return build_checkpoint(root / "model"), make_prompts(root / "prompts.jsonl", num_prompts=32)


@pytest.fixture
def job_flags():
    """Build the flags of a small, fast job on the demo task (local engines, fsdp)."""
    return _job_flags


def _job_flags(model, prompts, out, *extra: str) -> list[str]:
    return [
        "--hf-checkpoint", str(model), "--prompt-data", str(prompts), "--label-key", "label",
        "--apply-chat-template", "--rollout-batch-size", "2", "--n-samples-per-prompt", "4",
        "--rollout-max-response-len", "4", "--custom-rm-path", "slime.train.demo.task:reward_func",
        "--lr", "1e-3", "--use-dynamic-batch-size", "--max-tokens-per-gpu", "2048",
        "--train-backend", "fsdp", "--rollout-engine", "local", "--rollout-num-engines", "1",
        "--save", str(out / "ckpt"), "--save-interval", "1", "--metrics-jsonl", str(out / "metrics.jsonl"),
        *extra,
    ]  # fmt: skip
