"""`--custom-reward-post-process-path`: slime's hook between the rollout and training, run on a rollout's groups.

`apply_reward_post_process(args, groups)` resolves the path (slime's own path maps to this package's OPD
post-process), calls `fn(args, samples)` on the flattened samples of the whole rollout, checks that it returned
`(raw_rewards, rewards)` with one number each per sample, writes each raw reward back into `sample.reward` (so
that the samples read as scored with a scalar afterwards) and returns the rewards that replace the group
normalisation. The orchestrator calls it once per rollout, after the rollout function and before building the
training batch; the rollout function itself never calls it. It does not normalise anything itself.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from slime.sglang.rollout.functions import resolve_plugin
from slime.types import ContractError, RewardPostProcessFn, Sample

FLAG = "--custom-reward-post-process-path"


def load_reward_post_process(args: Any) -> RewardPostProcessFn | None:
    """The resolved `--custom-reward-post-process-path`, or None when it is unset (checks the signature)."""
    path = getattr(args, "custom_reward_post_process_path", None)
    return resolve_plugin(path, RewardPostProcessFn, FLAG) if path else None


def _numbers(value: Any, what: str, num_samples: int) -> list[float]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != num_samples:
        got = len(value) if isinstance(value, Sequence) else type(value).__name__
        raise ContractError(f"{FLAG} returned {got} {what} for {num_samples} samples; it must return one per sample.")
    if not all(isinstance(v, numbers.Real) for v in value):
        raise ContractError(f"{FLAG} returned {what} that are not all numbers: {list(value)[:4]!r}...")
    return [float(v) for v in value]


def apply_reward_post_process(args: Any, groups: Sequence[Sequence[Sample]]) -> list[float] | None:
    """Run the post-process over all samples of `groups` (in order); None when `--custom-reward-post-process-path`
    is unset.

    Returns:
        The post-processed rewards, one per sample in group order; the raw ones are now in `sample.reward`.

    Raises:
        ContractError: the function's return value is not two per-sample lists of numbers, or it left a sample's
            per-token fields misaligned (`Sample.validate`).
    """
    fn = load_reward_post_process(args)
    if fn is None:
        return None
    samples = [s for g in groups for s in g]
    result = fn(args, samples)
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise ContractError(f"{FLAG} returned {type(result).__name__}; it must return (raw_rewards, rewards).")
    raw = _numbers(result[0], "raw rewards", len(samples))
    rewards = _numbers(result[1], "rewards", len(samples))
    for sample, value in zip(samples, raw, strict=True):
        sample.reward = value
        sample.validate()
    return rewards
