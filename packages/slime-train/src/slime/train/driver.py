"""One training job from argv to the last metric: parse, check, resolve, place, run the loop, clean up.

This is the composition root: it composes the job's `RunConfig` once (`compose.compose_run`, which runs every
layer config's own checks), has `preflight` check every input (so a mistake stops the job before Ray or an
engine starts), builds the hosts (rollout engines + data, trainer ranks) in Ray actors or in this process
(`--no-ray`), restores a saved run when `--load` has one, and hands everything to `loop.run_sync` /
`loop.run_async`. It never implements a step itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from slime.train.arguments import ParsedArgs, parse_args
from slime.train.compose import compose_run
from slime.train.effects import warn_ineffective
from slime.train.handles import Group, LocalHandle, RayHandle
from slime.train.loop import Job, run_async, run_sync
from slime.train.metrics import FanOut, JsonlSink, StdoutSink, TensorBoardSink, WandbSink
from slime.train.preflight import preflight
from slime.train.progress import RunProgress
from slime.train.resolve import Environment, resolve
from slime.train.run_config import LoopConfig, RunConfig
from slime.train.run_state import load_run_state
from slime.train.validation import validate
from slime.types import MetricsSink


def _megatron_flag_hooks() -> tuple[object, list[str]]:
    """Megatron's own option strings, from slime.megatron's parser (none when it is not installed)."""
    try:
        from slime.megatron import megatron_args

        parser = megatron_args.build_parser()
    except ImportError:
        return (lambda name: False), []
    names = {opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")}
    return names.__contains__, sorted(names)


def parse_job_args(argv: Sequence[str], *, async_loop: bool, env: Environment) -> tuple[argparse.Namespace, ParsedArgs]:
    """Parse + validate + resolve; the second value keeps what the user typed and the pass-through flags."""
    is_megatron_flag, names = _megatron_flag_hooks()
    parsed = parse_args(argv, is_megatron_flag=is_megatron_flag, megatron_flag_names=names)  # type: ignore[arg-type]
    raw = argparse.Namespace(**vars(parsed.args), async_loop=async_loop)
    validate(raw)
    args = resolve(raw, env)
    if args.train_backend != "megatron" and parsed.megatron_argv:
        warnings.warn(
            f"Megatron flags {[t for t in parsed.megatron_argv if t.startswith('--')]} have no effect with "
            f"--train-backend {args.train_backend}.",
            UserWarning,
            stacklevel=2,
        )
    warn_ineffective(args, parsed.explicit, parsed.sglang_argv)
    args.sglang_passthrough = list(parsed.sglang_argv)
    args.megatron_passthrough = list(parsed.megatron_argv)
    args.explicit_flags = frozenset(parsed.explicit)
    return args, parsed


def build_sinks(args: argparse.Namespace) -> FanOut:
    """stdout always; JSON lines, TensorBoard and wandb when asked for."""
    sinks: list[MetricsSink] = [StdoutSink()]
    if args.metrics_jsonl:
        sinks.append(JsonlSink(args.metrics_jsonl))
    if args.use_tensorboard:
        root = args.tb_project_name or os.environ.get("TENSORBOARD_DIR", "tensorboard")
        sinks.append(TensorBoardSink(os.path.join(root, args.tb_experiment_name or "run")))
    if args.use_wandb:
        sinks.append(
            WandbSink(
                project=args.wandb_project,
                group=args.wandb_group,
                mode=args.wandb_mode,
                directory=args.wandb_dir,
                config=vars(args),
            )
        )
    return FanOut(sinks)


@contextlib.contextmanager
def _hosts(config: RunConfig) -> Iterator[tuple[LocalHandle | RayHandle, Group]]:
    from slime.train.rollout_host import RolloutHost
    from slime.train.trainer_host import TrainerHost

    if config.loop.no_ray:
        # The engines start (SGLang: a minute or more) while the trainer builds its model, as the Ray actors do.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollout-start") as pool:
            starting = pool.submit(RolloutHost, config)
            try:
                trainer_host = TrainerHost(config, rank=0, world_size=1)
            except BaseException:
                with contextlib.suppress(BaseException):
                    starting.result().shutdown()  # its engines go with it
                raise
            rollout = LocalHandle(starting.result())
        trainer = Group([LocalHandle(trainer_host)])
    else:
        from slime.train.actors import start_ray_hosts

        rollout, trainer = start_ray_hosts(config)
    try:
        yield rollout, trainer
    finally:
        with contextlib.suppress(Exception):
            trainer.call("shutdown")  # the weight sender and its engine client (a broadcast group, a session)
        with contextlib.suppress(Exception):
            rollout.submit("shutdown").result()
        trainer.close()
        rollout.close()


def _start(loop: LoopConfig, rollout: LocalHandle | RayHandle, trainer: Group) -> int:
    if loop.start_rollout_id is not None:
        return loop.start_rollout_id
    if not loop.load:
        return 0
    state = load_run_state(loop.load)
    if state is None:
        return 0
    rollout.submit("load_state_dict", state["data_source"]).result()
    trainer.call("load", state["rollout_id"])
    return int(state["rollout_id"]) + 1


def run_job(argv: Sequence[str], *, async_loop: bool = False) -> FanOut:
    """Run one job; return the metrics history."""
    args, _ = parse_job_args(argv, async_loop=async_loop, env=Environment.detect())
    config = compose_run(args)
    preflight(config)
    metrics = build_sinks(args)
    try:
        with _hosts(config) as (rollout, trainer):
            start = _start(config.loop, rollout, trainer)
            num_rollout = config.loop.num_rollout
            if num_rollout is None:
                per_epoch = rollout.submit("num_rollout_per_epoch").result()
                num_rollout = per_epoch * config.loop.num_epoch
            with RunProgress(args.progress, first=start, total=num_rollout) as progress:
                job = Job(
                    loop=config.loop,
                    rollout=rollout,
                    trainer=trainer,
                    metrics=metrics,
                    start_rollout_id=start,
                    num_rollout=num_rollout,
                    progress=progress,
                )
                return run_async(job) if async_loop else run_sync(job)
    finally:
        metrics.close()
