"""Evaluation rollout: every `--eval-prompt-data` dataset generated and scored, with metrics per dataset.

`--eval-prompt-data name path [name path ...]` (one bare path is named `aime`, as in slime). Each dataset is
read once per process (cached by its `PromptDataConfig`; the `--eval-input-key/-label-key/-tool-key`
overrides apply) and every prompt is sampled `--n-samples-per-eval-prompt` times with the eval sampling
parameters (`--eval-temperature/-top-p/-top-k/-max-response-len`, falling back to the rollout values).
All datasets run concurrently under one semaphore; there is no dynamic filter and no abort. Scoring uses
the same reward functions as training (per prompt group with `--group-rm`) and `--eval-reward-key`.
The result is an `EvalRolloutOutput`: dataset name -> `EvalDatasetResult` (samples + metrics), plus all
metrics flattened under `eval/*`. `eval_due` says when slime evaluates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Iterator, Mapping
from typing import Any

from slime.buffer.prompt_data import PromptDataConfig, PromptDataset
from slime.sglang.rollout.context import RolloutContext, make_context
from slime.sglang.rollout.functions import RolloutFunctions
from slime.sglang.rollout.group_run import GroupRun, flatten
from slime.sglang.rollout.metrics import eval_metrics
from slime.types import ConfigError, Sample

DEFAULT_EVAL_NAME = "aime"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class EvalDatasetResult:
    """One evaluation dataset's generated, scored samples and its metrics."""

    name: str
    samples: tuple[Sample, ...]
    """`n_samples_per_eval_prompt` samples per prompt, prompts in file order (same `group_index` per prompt)."""
    metrics: Mapping[str, float]
    """`eval/<name>` (mean reward), `-truncated_ratio`, `-aborted`, `/response_len/*`, `/pass@k`."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class EvalRolloutOutput(Mapping[str, EvalDatasetResult]):
    """Dataset name -> `EvalDatasetResult`; `metrics` holds every dataset's metrics together."""

    datasets: Mapping[str, EvalDatasetResult]
    metrics: Mapping[str, float]

    def __getitem__(self, name: str) -> EvalDatasetResult:
        return self.datasets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.datasets)

    def __len__(self) -> int:
        return len(self.datasets)


def eval_datasets(args: Any) -> list[tuple[str, str]]:
    """`(name, path)` pairs from `--eval-prompt-data` (empty when unset).

    Raises:
        ConfigError: an odd number of values (other than one bare path) or a repeated name.
    """
    values = getattr(args, "eval_prompt_data", None) or []
    if isinstance(values, str):
        values = [values]
    if len(values) == 1:
        return [(DEFAULT_EVAL_NAME, values[0])]
    if len(values) % 2:
        raise ConfigError(
            f"--eval-prompt-data got {len(values)} values {values!r}; give `name path` pairs, e.g. "
            "--eval-prompt-data aime aime.jsonl gsm8k gsm8k.jsonl."
        )
    pairs = [(values[i], values[i + 1]) for i in range(0, len(values), 2)]
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--eval-prompt-data repeats a dataset name: {names}; names must be unique.")
    return pairs


def eval_data_config(args: Any, path: str) -> PromptDataConfig:
    """The prompt-file settings for an eval dataset (eval key overrides first)."""

    def pick(eval_name: str, name: str, default: Any) -> Any:
        value = getattr(args, eval_name, None)
        return value if value is not None else getattr(args, name, default)

    return PromptDataConfig(
        path=path,
        input_key=pick("eval_input_key", "input_key", None) or getattr(args, "prompt_key", None) or "input",
        label_key=pick("eval_label_key", "label_key", None),
        metadata_key=getattr(args, "metadata_key", None) or "metadata",
        tool_key=pick("eval_tool_key", "tool_key", "tools"),
        apply_chat_template=bool(getattr(args, "apply_chat_template", False)),
    )


@functools.lru_cache(maxsize=32)
def load_eval_dataset(config: PromptDataConfig) -> PromptDataset:
    """The dataset of `config`, read once per process."""
    return PromptDataset.load(config)


def eval_groups(dataset: PromptDataset, n_samples: int) -> list[list[Sample]]:
    """Each prompt cloned `n_samples` times; `group_index` = prompt position, `index` running."""
    groups = []
    for position, prototype in enumerate(dataset):
        group = []
        for j in range(n_samples):
            sample = prototype.clone()
            sample.group_index, sample.index = position, position * n_samples + j
            group.append(sample)
        groups.append(group)
    return groups


async def _run_dataset(ctx: RolloutContext, name: str, path: str) -> EvalDatasetResult:
    n_samples = int(getattr(ctx.args, "n_samples_per_eval_prompt", None) or 1)
    if n_samples < 1:
        raise ConfigError(f"--n-samples-per-eval-prompt is {n_samples}; it must be >= 1.")
    dataset = load_eval_dataset(eval_data_config(ctx.args, path))
    runs = [GroupRun(ctx, group) for group in eval_groups(dataset, n_samples)]
    results = await asyncio.gather(*(run.run() for run in runs))
    samples = tuple(s for slots in results for s in flatten(slots))
    return EvalDatasetResult(name=name, samples=samples, metrics=eval_metrics(name, samples, ctx.reward_key))


async def eval_rollout_async(
    args: Any, rollout_id: int, *, functions: RolloutFunctions | None = None
) -> EvalRolloutOutput:
    """Generate and score every eval dataset concurrently on the running loop."""
    pairs = eval_datasets(args)
    if not pairs:
        raise ConfigError("evaluation was requested but --eval-prompt-data is not set.")
    ctx = await make_context(args, rollout_id, evaluation=True, functions=functions)
    results = await asyncio.gather(*(_run_dataset(ctx, name, path) for name, path in pairs))
    datasets = {r.name: r for r in results}
    metrics = {k: v for r in results for k, v in r.metrics.items()}
    return EvalRolloutOutput(datasets=datasets, metrics=metrics)


def eval_due(args: Any, rollout_id: int, num_rollout_per_epoch: int | None = None) -> bool:
    """slime's schedule after training on `rollout_id`: every `--eval-interval` rollouts and at epoch ends."""
    interval = getattr(args, "eval_interval", None)
    if interval is None or not eval_datasets(args):
        return False
    step = rollout_id + 1
    return step % interval == 0 or bool(num_rollout_per_epoch and step % num_rollout_per_epoch == 0)


def eval_before_train(args: Any) -> bool:
    """Whether slime evaluates once before the first training step (unless `--skip-eval-before-train`)."""
    return getattr(args, "eval_interval", None) is not None and bool(eval_datasets(args)) and not getattr(
        args, "skip_eval_before_train", False
    )
