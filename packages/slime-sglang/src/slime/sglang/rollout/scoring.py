"""Scoring inside the rollout: call the reward function per sample, or once per group with `--group-rm`.

Only finished samples (COMPLETED / TRUNCATED) without a reward are scored: a custom generate that already
set `reward` skips the reward function, and aborted or failed samples are never scored (they never reach
training). A per-sample `custom_rm_path` wins over `--custom-rm-path`, which wins over the reward hub
(`--rm-type`). The reward hub also gets the runtime's shared HTTP session. A reward that is not a number or
a dict raises `ContractError` naming the function; with a dict, `reward_key` must select a number.
"""

from __future__ import annotations

import asyncio
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from slime.sglang.rollout.context import RolloutContext
from slime.types import ContractError, Sample


def _name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"


def check_reward(value: Any, fn: Any, sample: Sample, reward_key: str | None) -> float | dict[str, Any]:
    """Validate one reward value (numbers become float)."""
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        reward = dict(value)
        if reward_key is not None and not isinstance(reward.get(reward_key), numbers.Real):
            raise ContractError(
                f"reward function {_name(fn)} returned a dict for sample {sample.index} whose key "
                f"{reward_key!r} (--reward-key) is {reward.get(reward_key)!r}, not a number."
            )
        return reward
    raise ContractError(
        f"reward function {_name(fn)} returned {type(value).__name__} for sample {sample.index}; "
        "it must return a number or a dict (with --reward-key)."
    )


def needs_reward(sample: Sample) -> bool:
    """Finished and not yet scored."""
    return sample.reward is None and sample.status.is_finished


def _kwargs(ctx: RolloutContext, custom: bool) -> dict[str, Any]:
    if custom:
        return {}
    session = ctx.runtime.reward_session()
    return {} if session is None else {"session": session}


async def score_sample(ctx: RolloutContext, sample: Sample) -> None:
    """Score one sample with its reward function (no-op when it has a reward or is not finished)."""
    if not needs_reward(sample):
        return
    fn, custom = ctx.functions.reward_fn_for(sample)
    if ctx.functions.group_rm:
        (value,) = await _call_group(ctx, fn, custom, [sample])
    else:
        value = await fn(ctx.args, sample, **_kwargs(ctx, custom))
    sample.reward = check_reward(value, fn, sample, ctx.reward_key)


async def score_samples(ctx: RolloutContext, samples: Sequence[Sample]) -> None:
    """Score each sample concurrently (the per-sample path; also used for a custom generate's sample list)."""
    await asyncio.gather(*(score_sample(ctx, s) for s in samples))


async def _call_group(ctx: RolloutContext, fn: Any, custom: bool, samples: list[Sample]) -> list[Any]:
    values = await fn(ctx.args, samples, **_kwargs(ctx, custom))
    if not isinstance(values, Sequence) or isinstance(values, str | bytes) or len(values) != len(samples):
        got = len(values) if isinstance(values, Sequence) else type(values).__name__
        raise ContractError(
            f"group reward function {_name(fn)} (--group-rm) returned {got} for a group of {len(samples)} "
            "samples; it must return one reward per sample, in order."
        )
    return list(values)


async def score_group(ctx: RolloutContext, samples: Sequence[Sample]) -> None:
    """`--group-rm`: score the group's unscored finished samples with one call (per reward function)."""
    todo = [s for s in samples if needs_reward(s)]
    by_fn: dict[int, tuple[Any, bool, list[Sample]]] = {}
    for sample in todo:
        fn, custom = ctx.functions.reward_fn_for(sample)
        by_fn.setdefault(id(fn), (fn, custom, []))[2].append(sample)
    for fn, custom, members in by_fn.values():
        values = await _call_group(ctx, fn, custom, members)
        for sample, value in zip(members, values, strict=True):
            sample.reward = check_reward(value, fn, sample, ctx.reward_key)
