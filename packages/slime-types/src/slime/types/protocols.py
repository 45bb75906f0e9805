"""The Protocols of every plugin seam and backend boundary.

Callable plugins (`GenerateFn`, `RewardFn`, ...) keep slime's positional signatures so that users' existing
functions load unchanged; `slime.types.plugin.resolve` checks them at config time. Component Protocols
(`PolicyTrainer`, `GenerationEngine`, `WeightSender`, `WeightReceiver`, `MetricsSink`) are what the
orchestrator drives. Tensors are typed as `Any` here because this layer must not import torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from slime.types.generation import GenerateOutput
from slime.types.records import RolloutBatch
from slime.types.sample import Sample
from slime.types.sampling import SamplingParams

NamedTensor = tuple[str, Any]
"""`(hf_name, tensor)`: a weight in HuggingFace naming and layout."""


class GenerateFn(Protocol):
    """`--custom-generate-function-path`: produce one trajectory for `sample`."""

    async def __call__(self, args: Any, sample: Sample, sampling_params: Any) -> Sample | list[Sample]:
        """Generate (possibly over several turns) and return the filled sample.

        Args:
            args: the run's flag namespace (slime's `args`), read-only.
            sample: this sample's own copy; set `tokens`, `response`, `response_length`, `loss_mask`,
                `status` and, when TIS or logprob metrics are used, `rollout_log_probs`.
            sampling_params: this call's own copy of the sampling parameters (a dict in SGLang's names).

        Returns:
            The same sample, or a list of samples that share one rollout (each trained separately).
            Setting `reward` skips the reward function. Called concurrently from one event loop.
        """
        ...


class RewardFn(Protocol):
    """`--custom-rm-path` (per sample): score one finished sample."""

    async def __call__(self, args: Any, sample: Sample, **kwargs: Any) -> float | dict[str, float]:
        """Return the reward; a dict needs `--reward-key` to pick the scalar. Called concurrently."""
        ...


class GroupRewardFn(Protocol):
    """`--custom-rm-path` with `--group-rm`: score all samples of one prompt together."""

    async def __call__(self, args: Any, samples: list[Sample], **kwargs: Any) -> list[float]:
        """Return one reward per sample, in order."""
        ...


class RewardPostProcessFn(Protocol):
    """`--custom-reward-post-process-path`: turn the rollout's raw rewards into training rewards (slime's hook)."""

    def __call__(self, args: Any, samples: list[Sample], **kwargs: Any) -> tuple[list[float], list[float]]:
        """Return `(raw_rewards, rewards)`, one of each per sample in order; `rewards` replace the group
        normalisation. It may fill per-sample fields too (OPD's post-process sets `teacher_log_probs`)."""
        ...


class RolloutFn(Protocol):
    """`--rollout-function-path`: replace the whole rollout."""

    def __call__(self, args: Any, rollout_id: int, data_buffer: Any, evaluation: bool = False) -> Any:
        """Return `rollout_batch_size` groups of `n_samples_per_prompt` scored samples (`list[list[Sample]]`).

        With `evaluation=True`, return a mapping of dataset name to its samples. `data_buffer` is the data
        source + partial-rollout buffer; take prompts with `data_buffer.get_samples(n)`.
        """
        ...


class DynamicFilterFn(Protocol):
    """`--dynamic-sampling-filter-path`: keep or drop one finished, scored group."""

    def __call__(self, args: Any, samples: list[Sample], **kwargs: Any) -> bool:
        """Return True to keep the group (for example when its rewards are not all equal)."""
        ...


class BufferFilterFn(Protocol):
    """`--buffer-filter-path`: choose which buffered groups the next rollout continues."""

    def __call__(
        self, args: Any, rollout_id: int | None, buffer: list[list[Sample]], num_samples: int
    ) -> list[list[Sample]]:
        """Remove and return up to `num_samples` groups from `buffer` (mutate it in place)."""
        ...


@runtime_checkable
class PolicyTrainer(Protocol):
    """A training backend (slime.megatron, slime.fsdp) as the orchestrator drives it."""

    def train(self, rollout_id: int, batch: RolloutBatch) -> Mapping[str, float]:
        """Run `num_steps_per_rollout` optimizer steps on `batch`; return reduced metrics (same on all ranks)."""
        ...

    def export_weights(self) -> Iterator[NamedTensor]:
        """Yield full (unsharded) weights in HF names and layout, a bucket's worth materialised at a time."""
        ...

    def save_checkpoint(self, rollout_id: int) -> str:
        """Write an atomic checkpoint for `rollout_id` and return its directory."""
        ...

    def offload(self) -> Mapping[str, float]:
        """Move parameters, gradients and optimizer state off the accelerator (colocate); return figures
        (`perf/offload_*`: bytes, where the time went), empty when there was nothing to do."""
        ...

    def onload(self) -> Mapping[str, float]:
        """Inverse of `offload`; return `perf/onload_*` figures."""
        ...


@runtime_checkable
class GenerationEngine(Protocol):
    """One generation server (SGLang or the local CPU server) as the rollout sees it. Async methods."""

    async def generate(self, input_ids: list[int], sampling_params: SamplingParams) -> GenerateOutput:
        """Generate a continuation with per-token log-probs of the sampled tokens."""
        ...

    async def abort_all(self) -> None:
        """Abort every in-flight request; aborted calls return with finish reason `abort`."""
        ...

    async def flush_cache(self) -> None:
        """Drop the prefix cache (after a weight update)."""
        ...


@runtime_checkable
class WeightSender(Protocol):
    """Trainer side of a weight transport."""

    def publish(self, named_tensors: Iterable[NamedTensor], version: int) -> Mapping[str, float]:
        """Send all weights tagged with `version`; return timing/byte figures. Blocks until receivers applied."""
        ...

    def close(self) -> None:
        """Release handles, groups and files this sender created."""
        ...


@runtime_checkable
class WeightReceiver(Protocol):
    """Engine side of a weight transport."""

    @property
    def version(self) -> int:
        """The weight version currently applied (-1 before the first)."""
        ...

    def apply(self, payload: Any) -> int:
        """Apply one publish; refuse an older version; on error keep the previous weights. Returns the version."""
        ...


@runtime_checkable
class MetricsSink(Protocol):
    """Where metrics go (stdout, tensorboard, wandb)."""

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Record scalar metrics at `step` (the rollout id). Must not raise on a NaN value."""
        ...

    def close(self) -> None:
        """Flush and release files."""
        ...
