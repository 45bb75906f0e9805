"""The checks a job runs before it starts Ray, an engine, the router or a trainer: every input mistake stops here.

`preflight(config)` runs after the flags parsed and validated and the `RunConfig` was composed (which already ran
every layer config's own checks), in this order: plugin paths (rollout side and loss
side) import and have the right signature; the engine pass-through flags are known to the engine and the launch
settings are consistent; `--hf-checkpoint`'s weights agree with its config; the prompt data decodes, renders and
fits the context (`prompt_check`; with `--skip-bad-rows` bad rows are counted instead); and a `--load` folder's run
state matches the data and points at a trainer checkpoint that exists. Each failure is the layer's `SlimeError`
naming the flag and the fix, which the CLI prints once and exits with code 2. It starts and writes nothing; the
hosts repeat their own loading afterwards (the data is read twice, which keeps the hosts self-contained).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from slime.train.run_config import RunConfig
from slime.types import ConfigError, RolloutFn, resolve


def check_plugins(args: argparse.Namespace, loss: Any) -> None:
    """Every plugin path of the rollout and of the loss (`loss`: the run's LossConfig) resolves to a function of
    the right shape."""
    from slime.loss.plugins import resolve_loss_plugins
    from slime.sglang.rollout import SLIME_PATH_ALIASES, RolloutFunctions, load_reward_post_process
    from slime.sglang.rollout.functions import DEFAULT_ROLLOUT_PATH

    rollout_path = SLIME_PATH_ALIASES.get(args.rollout_function_path, args.rollout_function_path)
    if rollout_path == DEFAULT_ROLLOUT_PATH:
        RolloutFunctions.from_args(args)  # the default rollout's generate / reward / filter / hook plugins too
    else:
        resolve(rollout_path, RolloutFn, flag="--rollout-function-path")
    eval_path = SLIME_PATH_ALIASES.get(args.eval_function_path, args.eval_function_path)
    resolve(eval_path, RolloutFn, flag="--eval-function-path")
    load_reward_post_process(args)
    resolve_loss_plugins(loss)


def check_engine_flags(config: Any) -> None:
    """The `--sglang-*` pass-through flags of the run's `EngineGroupConfig` are known to the engine, and what they
    need is installed where the engines will run (checked only when SGLang is importable here)."""
    from slime.sglang.server_args import known_server_flags, validate_server_args

    engine = config.engine
    validate_server_args(engine.server_args, known_server_flags(engine.backend), backend=engine.backend)
    sglang_here = engine.backend == "sglang" and _importable("sglang")
    if sglang_here and "--enable-memory-saver" in engine.server_args and not _importable("torch_memory_saver"):
        raise ConfigError(
            "the SGLang engines run with --enable-memory-saver (slime adds it when they release their memory for "
            "the trainer: --colocate or --offload-rollout), but torch_memory_saver is not installed in "
            f"{sys.executable}. Fix: pip install torch_memory_saver (stock sglang depends on it), or keep the "
            "engines' memory with --no-offload-rollout."
        )


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_resume(args: argparse.Namespace, data_source: object | None) -> None:
    """`--load`: the saved run state loads, fits the data, and its trainer checkpoint folder exists."""
    from slime.train.run_state import load_run_state

    state = load_run_state(args.load)
    if state is None:
        return
    rollout_id = int(state["rollout_id"])
    folder = Path(args.load) / f"iter_{rollout_id:07d}"
    if not (folder.is_dir() or folder.with_name(folder.name + ".old").is_dir()):
        raise ConfigError(
            f"--load {args.load}: the run state is at rollout {rollout_id} but the trainer checkpoint {folder} is "
            "missing. Fix: restore that folder, or resume from another --load folder (or start fresh without --load)."
        )
    if data_source is not None:
        data_source.load_state_dict(state["data_source"])  # type: ignore[attr-defined]  # raises DataError


def preflight(config: RunConfig) -> None:
    """Run every check (see the module docstring); raises the first problem found."""
    from slime.train.hf_checkpoint_check import check_hf_checkpoint
    from slime.train.prompt_check import checked_data_source

    args = config.args
    needs_rollout = not args.debug_train_only
    if needs_rollout:
        check_plugins(args, config.loss)
    if config.engines is not None:
        check_engine_flags(config.engines)
    if args.hf_checkpoint:
        check_hf_checkpoint(args.hf_checkpoint)
    data_source = checked_data_source(args) if needs_rollout else None
    if args.load and args.start_rollout_id is None:
        check_resume(args, data_source)
