"""Frozen records that cross from rollout into trainers: `TrainSample` and `RolloutBatch`.

A trainer receives these and nothing else (no dict-of-lists batches, no tokenizers, no tensors). They are
built from finished `Sample`s by `RolloutBatch.from_groups`; advantages are computed by the trainer with
slime.loss, since some estimators need the trainer's own log-probs and values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from slime.types.errors import ContractError
from slime.types.sample import Sample


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TrainSample:
    """One sequence to train on: `tokens` = prompt + response, the response being the last `response_length`."""

    tokens: tuple[int, ...]
    response_length: int
    loss_mask: tuple[int, ...]
    """One 0/1 entry per response token."""
    reward: float
    """Scalar reward before any normalisation (the raw reward)."""
    group_index: int
    """Samples of one prompt share it; group-relative estimators normalise within it."""
    index: int
    rollout_log_probs: tuple[float, ...] | None = None
    """Per response token, from the engine; required for TIS and the train/rollout logprob diff."""
    teacher_log_probs: tuple[float, ...] | None = None
    """Per response token, from an OPD teacher (`--use-opd --opd-type sglang`: filled during the rollout by the
    reward post-process); None when no teacher scored the sample."""
    weight_version: str | None = None
    """Policy version that generated the last token (the staleness bound reads it)."""
    is_truncated: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.response_length <= len(self.tokens):
            raise ContractError(
                f"TrainSample {self.index}: response_length {self.response_length} must be in [1, {len(self.tokens)}]."
            )
        if len(self.loss_mask) != self.response_length:
            raise ContractError(
                f"TrainSample {self.index}: len(loss_mask)={len(self.loss_mask)} "
                f"!= response_length={self.response_length}."
            )
        for name in ("rollout_log_probs", "teacher_log_probs"):
            value = getattr(self, name)
            if value is not None and len(value) != self.response_length:
                raise ContractError(
                    f"TrainSample {self.index}: len({name})={len(value)} != response_length={self.response_length}."
                )

    @property
    def total_length(self) -> int:
        """Prompt + response tokens."""
        return len(self.tokens)

    @property
    def prompt_length(self) -> int:
        """Tokens before the response."""
        return len(self.tokens) - self.response_length

    @classmethod
    def from_sample(cls, sample: Sample, reward_key: str | None = None) -> TrainSample:
        """Convert a finished, scored `Sample`; a removed sample keeps its reward but gets an all-zero mask."""
        sample.validate()
        if sample.index is None or sample.group_index is None:
            raise ContractError("a sample reaching training needs `index` and `group_index` (set by the data source).")
        mask = sample.loss_mask if sample.loss_mask is not None else [1] * sample.response_length
        if sample.remove_sample:
            mask = [0] * sample.response_length
        return cls(
            tokens=tuple(sample.tokens),
            response_length=sample.response_length,
            loss_mask=tuple(mask),
            reward=sample.get_reward_value(reward_key),
            group_index=sample.group_index,
            index=sample.index,
            rollout_log_probs=None if sample.rollout_log_probs is None else tuple(sample.rollout_log_probs),
            teacher_log_probs=_floats(sample.teacher_log_probs),
            weight_version=sample.weight_versions[-1] if sample.weight_versions else None,
            is_truncated=sample.status == Sample.Status.TRUNCATED,
        )


def _floats(values: Sequence[float] | None) -> tuple[float, ...] | None:
    # float() also takes a 0-d tensor: slime's own post-processes store a torch tensor here.
    return None if values is None else tuple(float(v) for v in values)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RolloutBatch:
    """All samples of one rollout, in group order: groups of `n_samples_per_prompt` consecutive samples."""

    rollout_id: int
    samples: tuple[TrainSample, ...]
    n_samples_per_prompt: int
    scores: tuple[float, ...] | None = None
    """Per-sample scores that replace the group baseline (the rewards slime's `--custom-reward-post-process-path`
    returns); None: the trainer normalises the raw rewards per group as the estimator says."""

    def __post_init__(self) -> None:
        if not self.samples:
            raise ContractError(f"RolloutBatch {self.rollout_id} is empty; a rollout must produce samples.")
        if self.scores is not None and len(self.scores) != len(self.samples):
            raise ContractError(
                f"RolloutBatch {self.rollout_id} has {len(self.scores)} scores for {len(self.samples)} samples; "
                "a reward post-process must return one score per sample."
            )

    @property
    def num_tokens(self) -> int:
        """Total tokens (prompt + response) in the batch."""
        return sum(s.total_length for s in self.samples)

    @classmethod
    def from_groups(
        cls,
        rollout_id: int,
        groups: Sequence[Sequence[Sample]],
        reward_key: str | None = None,
        scores: Sequence[float] | None = None,
    ) -> RolloutBatch:
        """Flatten groups of scored samples (every group the same size); `scores`: see the field."""
        sizes = {len(g) for g in groups}
        if len(sizes) != 1:
            raise ContractError(f"rollout {rollout_id}: groups have different sizes {sorted(sizes)}.")
        samples = tuple(TrainSample.from_sample(s, reward_key) for g in groups for s in g)
        final = None if scores is None else tuple(float(x) for x in scores)
        return cls(rollout_id=rollout_id, samples=samples, n_samples_per_prompt=sizes.pop(), scores=final)
