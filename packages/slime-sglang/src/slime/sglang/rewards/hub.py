"""The reward hub: slime's built-in reward types behind `--rm-type` (or `metadata["rm_type"]` per sample).

`rm_hub_reward(args, sample)` fits `slime.types.RewardFn` and `batched_rm_hub_reward(args, samples)` fits
`GroupRewardFn`, so both also load through `--custom-rm-path`. Types: `math`, `deepscaler`, `dapo` (boxed /
`Answer:` math graded by math-verify in the grading process pool), `f1`, `gpqa` (choice letter),
`remote_rm` (`--rm-url`, retried) and `random`. A `boxed_` prefix (e.g. `boxed_f1`) grades the content of the
response's last `\\boxed{}` instead of the whole response (the math types already do). `check_rm_type` is
the start-up check. The hub does not decide when to score; the rollout does.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from slime.sglang.rewards.f1 import f1_score
from slime.sglang.rewards.gpqa import grade_gpqa
from slime.sglang.rewards.grading_pool import run_grader
from slime.sglang.rewards.math_answer import extract_boxed, grade_dapo, grade_deepscaler, grade_math
from slime.sglang.rewards.remote import RemoteRewardConfig, post_reward, reward_payload
from slime.types import ConfigError, Sample

BOXED_PREFIX = "boxed_"
_POOLED: dict[str, Callable[[str, Any], Any]] = {"math": grade_math, "deepscaler": grade_deepscaler, "dapo": grade_dapo}
RM_TYPES: tuple[str, ...] = (*_POOLED, "f1", "gpqa", "remote_rm", "random")
"""Every `--rm-type` the hub knows (each also with the `boxed_` prefix)."""


def _base_type(rm_type: str) -> tuple[str, bool]:
    boxed = rm_type.startswith(BOXED_PREFIX)
    return (rm_type[len(BOXED_PREFIX) :] if boxed else rm_type), boxed


def check_rm_type(rm_type: str | None, args: Any = None, *, flag: str = "--rm-type") -> None:
    """Start-up check: `rm_type` is known and has what it needs (`--rm-url` for remote_rm).

    Raises:
        ConfigError: naming the value, the known types and the fix.
    """
    if rm_type is None:
        return
    base, _ = _base_type(str(rm_type))
    if base not in RM_TYPES:
        raise ConfigError(
            f"{flag} is {rm_type!r}, which the reward hub does not know; use one of {', '.join(RM_TYPES)} "
            f"(optionally prefixed with {BOXED_PREFIX!r}) or set --custom-rm-path to your own reward function."
        )
    if base == "remote_rm":
        RemoteRewardConfig.from_args(args)


def sample_rm_type(args: Any, sample: Sample) -> str:
    """The reward type for `sample`: its `metadata["rm_type"]`, else `--rm-type`.

    Raises:
        ConfigError: neither is set.
    """
    rm_type = (sample.metadata or {}).get("rm_type") or getattr(args, "rm_type", None)
    if not rm_type:
        raise ConfigError(
            f"sample {sample.index} needs a reward but neither --rm-type nor --custom-rm-path is set and its "
            "metadata has no 'rm_type'; set one of them (e.g. --rm-type math)."
        )
    return str(rm_type)


async def rm_hub_reward(args: Any, sample: Sample, **kwargs: Any) -> float | dict[str, Any]:
    """Score one sample with its built-in reward type; pass `session=` (aiohttp) to reuse connections for remote_rm."""
    rm_type = sample_rm_type(args, sample)
    check_rm_type(rm_type, args, flag="rm_type")
    base, boxed = _base_type(rm_type)
    response = sample.response or ""
    if base in _POOLED:
        return await run_grader(_POOLED[base], response, sample.label)
    if boxed:
        response = extract_boxed(response) or ""
    if base == "f1":
        return f1_score(response, sample.label)
    if base == "gpqa":
        return grade_gpqa(response, sample.label, sample.metadata)
    if base == "random":
        return float(random.randint(0, 1))
    payload = reward_payload(sample.prompt, response, sample.label)
    return await post_reward(RemoteRewardConfig.from_args(args), payload, session=kwargs.get("session"))


async def batched_rm_hub_reward(args: Any, samples: list[Sample], **kwargs: Any) -> list[float | dict[str, Any]]:
    """Score several samples concurrently (each with its own type); results are in input order."""
    return list(await asyncio.gather(*(rm_hub_reward(args, s, **kwargs) for s in samples)))
