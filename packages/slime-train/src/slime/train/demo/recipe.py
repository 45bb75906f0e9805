"""The demo recipe: the flags of the embedded default run, and the driver that prepares and reports it.

`slime-train demo [--flag value ...]` builds the checkpoint and prompt file under `--output-dir`, then runs
the normal training entry point with these flags (user flags override them), draws the reward curve and
prints a summary. Nothing here is special-cased in the packaged loop: the demo is just a set of flags.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from slime.train.demo.checkpoint import build_checkpoint
from slime.train.demo.task import make_prompts


def demo_flags(out: Path) -> list[str]:
    """The demo's slime flags, rooted at `out`."""
    return [
        "--hf-checkpoint", str(out / "model"), "--prompt-data", str(out / "prompts.jsonl"),
        "--input-key", "input", "--label-key", "label", "--apply-chat-template", "--rollout-shuffle",
        "--rollout-batch-size", "8", "--n-samples-per-prompt", "8", "--num-rollout", "40",
        "--rollout-max-response-len", "8", "--rollout-temperature", "1.0",
        "--custom-rm-path", "slime.train.demo.task:reward_func",
        "--advantage-estimator", "grpo", "--lr", "5e-3", "--clip-grad", "1.0",
        "--use-dynamic-batch-size", "--max-tokens-per-gpu", "4096",
        "--train-backend", "fsdp", "--rollout-engine", "local", "--rollout-num-engines", "2",
        "--actor-num-nodes", "1", "--actor-num-gpus-per-node", "1", "--colocate",
        "--save", str(out / "checkpoints"), "--save-interval", "10",
        "--save-hf", str(out / "hf" / "rollout_{rollout_id}"),
        "--use-tensorboard", "--tb-project-name", str(out / "tensorboard"), "--tb-experiment-name", "demo",
        "--metrics-jsonl", str(out / "metrics.jsonl"),
    ]  # fmt: skip


def _split_output_dir(argv: Sequence[str]) -> tuple[Path, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--output-dir", default="outputs/demo")
    known, rest = parser.parse_known_args(list(argv))
    return Path(known.output_dir), rest


def run_demo(argv: Sequence[str]) -> int:
    """Prepare the demo's files, train, plot the reward curve; returns the process exit code."""
    from slime.train.cli import run_training  # the real entry point; imported here to keep start-up light

    out, overrides = _split_output_dir(argv)
    started = time.perf_counter()
    build_checkpoint(out / "model")
    make_prompts(out / "prompts.jsonl")
    print(f"[demo] tiny Qwen3 + char tokenizer in {out / 'model'}; prompts in {out / 'prompts.jsonl'}", flush=True)
    history = run_training([*demo_flags(out), *overrides])
    rewards = history.series("rollout/reward_mean")
    if rewards:
        from slime.train.plot import plot_curve

        png = plot_curve(rewards, out / "reward_curve.png", title="demo: GRPO on a tiny Qwen3", ylabel="mean reward")
        first, last = rewards[0][1], sum(v for _, v in rewards[-3:]) / len(rewards[-3:])
        print(f"[demo] reward {first:.3f} -> {last:.3f} (mean of the last 3 rollouts); curve: {png}", flush=True)
    print(f"[demo] done in {time.perf_counter() - started:.0f} s; outputs under {out}", flush=True)
    return 0
