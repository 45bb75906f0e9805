"""Rollout and evaluation metrics from finished samples: pure functions, no I/O.

Training (`rollout/*`): reward mean / std, response length mean / max / min, truncated ratio, groups with
zero reward std, plus the counts the rollout loop passes in (aborted samples, partial samples resumed or
returned to the buffer, dynamic-filter counts). Evaluation (`eval/<name>*`): mean reward (slime's
`eval/<name>`), truncated ratio, response length, aborted count and pass@k for k = 1, 2, 4, ... up to the
samples per prompt, with the unbiased estimator 1 - C(n-c, k) / C(n, k) averaged over prompts; a sample
counts as correct when its scalar reward is >= `PASS_THRESHOLD` (1.0, slime's "raw reward == 1").
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence

from slime.types import Sample, Status

PASS_THRESHOLD = 1.0


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Probability that at least one of `k` samples drawn without replacement from `num_samples` is correct."""
    if not 0 <= num_correct <= num_samples or not 1 <= k <= num_samples:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n (got n={num_samples}, c={num_correct}, k={k})")
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - math.comb(num_samples - num_correct, k) / math.comb(num_samples, k)


def reward_values(samples: Sequence[Sample], reward_key: str | None) -> list[float]:
    """Scalar rewards; unscored samples count as 0.0 (only evaluation can have them: aborted by an engine)."""
    return [0.0 if s.reward is None else s.get_reward_value(reward_key) for s in samples]


def _length_stats(prefix: str, samples: Sequence[Sample]) -> dict[str, float]:
    lengths = [s.response_length for s in samples] or [0]
    return {
        f"{prefix}response_len/mean": statistics.fmean(lengths),
        f"{prefix}response_len/max": float(max(lengths)),
        f"{prefix}response_len/min": float(min(lengths)),
    }


def training_metrics(
    groups: Sequence[Sequence[Sample]], reward_key: str | None, *, with_rewards: bool = True
) -> dict[str, float]:
    """`rollout/*` metrics of the groups returned for training (`with_rewards=False`: no reward figures, for
    rewards that a `--custom-reward-post-process-path` has yet to turn into numbers)."""
    samples = [s for g in groups for s in g]
    out = {
        "rollout/truncated_ratio": sum(s.status is Status.TRUNCATED for s in samples) / max(1, len(samples)),
        "rollout/num_groups": float(len(groups)),
        "rollout/num_samples": float(len(samples)),
    }
    if with_rewards:
        rewards = reward_values(samples, reward_key) or [0.0]
        out["rollout/reward_mean"] = statistics.fmean(rewards)
        out["rollout/reward_std"] = statistics.pstdev(rewards)
        out["rollout/zero_std_groups"] = float(sum(1 for g in groups if len({*reward_values(g, reward_key)}) <= 1))
    out.update(_length_stats("rollout/", samples))
    return out


def pass_at_k_metrics(prefix: str, groups: Sequence[Sequence[Sample]], reward_key: str | None) -> dict[str, float]:
    """`{prefix}pass@k` for k = 1, 2, 4, ... <= the smallest group size."""
    groups = [g for g in groups if g]
    if not groups:
        return {}
    n_min = min(len(g) for g in groups)
    out: dict[str, float] = {}
    k = 1
    while k <= n_min:
        scores = []
        for group in groups:
            correct = sum(r >= PASS_THRESHOLD for r in reward_values(group, reward_key))
            scores.append(pass_at_k(len(group), correct, k))
        out[f"{prefix}pass@{k}"] = statistics.fmean(scores)
        k *= 2
    return out


def eval_metrics(name: str, samples: Sequence[Sample], reward_key: str | None) -> dict[str, float]:
    """`eval/<name>` metrics of one dataset (samples of one prompt share `group_index`)."""
    rewards = reward_values(samples, reward_key) or [0.0]
    by_prompt: dict[int | None, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_prompt[sample.group_index].append(sample)
    out = {
        f"eval/{name}": statistics.fmean(rewards),
        f"eval/{name}-truncated_ratio": sum(s.status is Status.TRUNCATED for s in samples) / max(1, len(samples)),
        f"eval/{name}-aborted": float(sum(s.status is Status.ABORTED for s in samples)),
    }
    out.update(_length_stats(f"eval/{name}/", samples))
    out.update(pass_at_k_metrics(f"eval/{name}/", list(by_prompt.values()), reward_key))
    return out
