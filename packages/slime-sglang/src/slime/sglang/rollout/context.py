"""`RolloutContext`: the state one rollout (or evaluation) call shares between its sample tasks.

It holds the resolved plugins, the base sampling parameters, the concurrency semaphore
(`--sglang-server-concurrency` x number of engines) and the abort flag. Built by `make_context` inside the
event loop that runs the rollout (the semaphore belongs to that loop). Nothing here talks to engines.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from slime.sglang.rollout.functions import RolloutFunctions
from slime.sglang.rollout.runtime import RolloutRuntime
from slime.sglang.rollout.sampling import sampling_params_from_args
from slime.types import ConfigError, SamplingParams

DEFAULT_SERVER_CONCURRENCY = 512


@dataclasses.dataclass(kw_only=True, slots=True)
class RolloutContext:
    """Per-call rollout state (mutable: `aborted` flips once the rollout has what it needs)."""

    args: Any
    functions: RolloutFunctions
    runtime: RolloutRuntime
    rollout_id: int
    evaluation: bool
    sampling: SamplingParams
    semaphore: asyncio.Semaphore
    reward_key: str | None
    aborted: bool = False
    """Set when the rollout stops: samples not yet started are marked ABORTED instead of generated."""


async def make_context(
    args: Any,
    rollout_id: int,
    *,
    evaluation: bool,
    functions: RolloutFunctions | None = None,
    sampling: SamplingParams | None = None,
) -> RolloutContext:
    """Resolve plugins (cached), build sampling params and the semaphore for one rollout call."""
    runtime = RolloutRuntime.for_args(args)
    concurrency = getattr(args, "sglang_server_concurrency", None) or DEFAULT_SERVER_CONCURRENCY
    if int(concurrency) < 1:
        raise ConfigError(f"--sglang-server-concurrency is {concurrency}; it must be >= 1.")
    num_engines = await runtime.num_engines()
    reward_key = getattr(args, "reward_key", None)
    if evaluation:
        reward_key = getattr(args, "eval_reward_key", None) or reward_key
    return RolloutContext(
        args=args,
        functions=functions or RolloutFunctions.from_args(args),
        runtime=runtime,
        rollout_id=rollout_id,
        evaluation=evaluation,
        sampling=sampling or sampling_params_from_args(args, evaluation=evaluation),
        semaphore=asyncio.Semaphore(int(concurrency) * num_engines),
        reward_key=reward_key,
    )
