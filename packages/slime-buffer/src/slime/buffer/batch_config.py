"""Batch arithmetic: how one rollout's samples split into optimizer steps and data-parallel ranks.

The rule is `rollout_batch_size * n_samples_per_prompt == global_batch_size * num_steps_per_rollout`, and each
step's `global_batch_size` samples must divide evenly over the `data_parallel_size` ranks (and into static
micro-batches when `micro_batch_size` is used). slime derives `global_batch_size` only from
`--num-steps-per-rollout` and silently drops samples that do not fill a step; here a mismatch is an error
that names the flags and the fix. `BatchConfig.resolve()` returns a new config with the missing sizes
derived; nothing is ever mutated. This module does not schedule samples.
"""

from __future__ import annotations

import dataclasses

from slime.types import ConfigError


def _positive(name: str, flag: str, value: int | None, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} is {value!r}; set {flag} to an int >= 1.")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BatchConfig:
    """Batch sizes of one rollout and its training steps (slime's flag names)."""

    rollout_batch_size: int
    """`--rollout-batch-size`: prompt groups per rollout."""
    n_samples_per_prompt: int = 1
    """`--n-samples-per-prompt`: samples per group."""
    global_batch_size: int | None = None
    """`--global-batch-size`: samples per optimizer step; None derives it in `resolve()`."""
    num_steps_per_rollout: int | None = None
    """`--num-steps-per-rollout`: optimizer steps per rollout; None derives it in `resolve()` (1 if both unset)."""
    data_parallel_size: int = 1
    """Data-parallel ranks sharing each step's samples."""
    micro_batch_size: int | None = None
    """`--micro-batch-size` for static batching (None with `--use-dynamic-batch-size`)."""
    over_sampling_batch_size: int | None = None
    """`--over-sampling-batch-size`: groups pulled per dynamic-sampling top-up; None means rollout_batch_size."""

    def __post_init__(self) -> None:
        _positive("rollout_batch_size", "--rollout-batch-size", self.rollout_batch_size, optional=False)
        _positive("n_samples_per_prompt", "--n-samples-per-prompt", self.n_samples_per_prompt, optional=False)
        _positive("global_batch_size", "--global-batch-size", self.global_batch_size, optional=True)
        _positive("num_steps_per_rollout", "--num-steps-per-rollout", self.num_steps_per_rollout, optional=True)
        _positive("data_parallel_size", "the data-parallel size", self.data_parallel_size, optional=False)
        _positive("micro_batch_size", "--micro-batch-size", self.micro_batch_size, optional=True)
        _positive(
            "over_sampling_batch_size", "--over-sampling-batch-size", self.over_sampling_batch_size, optional=True
        )
        if self.over_sampling_batch_size is not None and self.over_sampling_batch_size < self.rollout_batch_size:
            raise ConfigError(
                f"--over-sampling-batch-size ({self.over_sampling_batch_size}) is smaller than --rollout-batch-size "
                f"({self.rollout_batch_size}); set it >= the rollout batch size or leave it unset."
            )
        self._check_steps()
        if self.global_batch_size is not None:
            self._check_dp(self.global_batch_size)

    @property
    def samples_per_rollout(self) -> int:
        """`rollout_batch_size * n_samples_per_prompt`."""
        return self.rollout_batch_size * self.n_samples_per_prompt

    def _check_steps(self) -> None:
        total, gbs, steps = self.samples_per_rollout, self.global_batch_size, self.num_steps_per_rollout
        what = f"--rollout-batch-size {self.rollout_batch_size} x --n-samples-per-prompt {self.n_samples_per_prompt}"
        if gbs is not None and steps is not None and gbs * steps != total:
            fix = (
                f"set --global-batch-size {total // steps}"
                if total % steps == 0
                else f"choose a --num-steps-per-rollout that divides {total}"
            )
            raise ConfigError(
                f"{what} = {total} samples per rollout, but --global-batch-size {gbs} x --num-steps-per-rollout "
                f"{steps} = {gbs * steps}. Fix: {fix}, or drop one of the two flags so it is derived."
            )
        if gbs is not None and steps is None and total % gbs:
            raise ConfigError(
                f"{what} = {total} samples per rollout is not a multiple of --global-batch-size {gbs}, so the last "
                f"step would be partial. Fix: choose a --global-batch-size that divides {total} "
                f"(e.g. {_largest_divisor_at_most(total, gbs)}) or set --num-steps-per-rollout."
            )
        if steps is not None and gbs is None and total % steps:
            raise ConfigError(
                f"{what} = {total} samples per rollout cannot be split into --num-steps-per-rollout {steps} equal "
                f"steps. Fix: choose a step count that divides {total} (e.g. {_largest_divisor_at_most(total, steps)})."
            )

    def _check_dp(self, gbs: int) -> None:
        dp, mbs = self.data_parallel_size, self.micro_batch_size
        if gbs % dp:
            raise ConfigError(
                f"global_batch_size {gbs} (--global-batch-size, or derived from --rollout-batch-size x "
                f"--n-samples-per-prompt / --num-steps-per-rollout) is not divisible by the data-parallel size {dp}. "
                f"Fix: make it a multiple of {dp} or change the number of GPUs / parallelism."
            )
        if mbs is not None and (gbs // dp) % mbs:
            raise ConfigError(
                f"each data-parallel rank gets {gbs // dp} samples per step (global_batch_size {gbs} / dp {dp}), "
                f"not a multiple of --micro-batch-size {mbs}. Fix: pick a --micro-batch-size dividing {gbs // dp} "
                "or use --use-dynamic-batch-size."
            )

    def resolve(self) -> BatchConfig:
        """A new config with `global_batch_size`, `num_steps_per_rollout` and `over_sampling_batch_size` set.

        Both unset means one step per rollout. The DP checks run on the derived global batch size too.
        """
        total, gbs, steps = self.samples_per_rollout, self.global_batch_size, self.num_steps_per_rollout
        if gbs is None:
            gbs = total // (steps or 1)
        if steps is None:
            steps = total // gbs
        return dataclasses.replace(
            self,
            global_batch_size=gbs,
            num_steps_per_rollout=steps,
            over_sampling_batch_size=self.over_sampling_batch_size or self.rollout_batch_size,
        )

    @property
    def samples_per_dp_rank(self) -> int:
        """Samples each DP rank trains on per step (needs a resolved config)."""
        if self.global_batch_size is None:
            raise ConfigError("samples_per_dp_rank needs global_batch_size; call BatchConfig.resolve() first.")
        return self.global_batch_size // self.data_parallel_size


def _largest_divisor_at_most(total: int, bound: int) -> int:
    return max(d for d in range(1, min(total, bound) + 1) if total % d == 0)


def check_batch_arithmetic(
    *,
    rollout_batch_size: int,
    n_samples_per_prompt: int = 1,
    global_batch_size: int | None = None,
    num_steps_per_rollout: int | None = None,
    data_parallel_size: int = 1,
    micro_batch_size: int | None = None,
    over_sampling_batch_size: int | None = None,
) -> BatchConfig:
    """Validate the batch flags and return the resolved `BatchConfig`; raise `ConfigError` naming flags and fix."""
    return BatchConfig(
        rollout_batch_size=rollout_batch_size,
        n_samples_per_prompt=n_samples_per_prompt,
        global_batch_size=global_batch_size,
        num_steps_per_rollout=num_steps_per_rollout,
        data_parallel_size=data_parallel_size,
        micro_batch_size=micro_batch_size,
        over_sampling_batch_size=over_sampling_batch_size,
    ).resolve()
