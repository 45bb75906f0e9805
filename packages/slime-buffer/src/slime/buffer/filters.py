"""Built-in filter plugins: the buffer filter `pop_first` and the dynamic-sampling group filters.

`pop_first` fits `slime.types.BufferFilterFn` (`--buffer-filter-path`); `check_reward_nonzero_std` and its
`_with_fallback` variant fit `slime.types.DynamicFilterFn` (`--dynamic-sampling-filter-path`), so the paths
`slime.buffer.filters.pop_first` and `slime.buffer.filters.check_reward_nonzero_std` load with
`slime.types.resolve`. A dynamic filter may return a bare bool or a `DynamicFilterOutput` carrying a drop
reason. Nothing here generates or scores samples.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

from slime.types import Sample


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class DynamicFilterOutput:
    """What a dynamic-sampling filter decided about one finished group."""

    keep: bool
    """Keep the group for training."""
    reason: str | None = None
    """Why a dropped group was dropped; counted as metric `rollout/dynamic_filter/drop_<reason>`."""
    keep_when_insufficient: bool = False
    """Keep a dropped group anyway when the groups still pending could no longer reach the target without it."""


def pop_first(args: Any, rollout_id: int | None, buffer: list[list[Sample]], num_samples: int) -> list[list[Sample]]:
    """Remove and return the first `num_samples` groups of `buffer` (FIFO; fewer if it holds fewer).

    The default `--buffer-filter-path`. Groups come back in the order they were added, and `buffer` is
    mutated in place, as the `BufferFilterFn` contract requires.
    """
    taken = buffer[: max(0, num_samples)]
    del buffer[: len(taken)]
    return taken


def group_reward_std(samples: list[Sample], reward_key: str | None = None) -> float:
    """Sample standard deviation (n-1) of the group's scalar rewards; 0.0 for fewer than two samples.

    Computed with `statistics.stdev`, which sums exactly, so equal rewards give exactly 0.0.
    """
    rewards = [s.get_reward_value(reward_key) for s in samples]
    if len(rewards) < 2:
        return 0.0
    if not all(math.isfinite(r) for r in rewards):
        return math.nan
    return statistics.stdev(rewards)


def check_reward_nonzero_std(args: Any, samples: list[Sample], **kwargs: Any) -> bool:
    """Keep the group iff its rewards are not all equal (std > 0): equal rewards give GRPO no signal.

    Dict rewards are reduced with `args.reward_key` (`--reward-key`). Groups of one sample, and groups with
    a non-finite reward, are dropped.
    """
    return group_reward_std(samples, getattr(args, "reward_key", None)) > 0.0


def check_reward_nonzero_std_with_fallback(args: Any, samples: list[Sample], **kwargs: Any) -> DynamicFilterOutput:
    """`check_reward_nonzero_std`, but a zero-std group is still kept when the target could not be met otherwise."""
    keep = check_reward_nonzero_std(args, samples, **kwargs)
    reason = None
    if not keep and samples:
        reward = samples[0].get_reward_value(getattr(args, "reward_key", None))
        reason = f"zero_std_{reward:g}"
    return DynamicFilterOutput(keep=keep, reason=reason, keep_when_insufficient=True)
