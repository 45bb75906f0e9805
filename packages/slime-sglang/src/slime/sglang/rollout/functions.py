"""`RolloutFunctions`: every plugin path of the rollout, resolved and signature-checked once at start-up.

`RolloutFunctions.from_args(args)` loads `--rollout-function-path`, `--eval-function-path`,
`--custom-generate-function-path`, `--custom-rm-path` (a `GroupRewardFn` with `--group-rm`),
`--dynamic-sampling-filter-path` and `--rollout-sample-hook-path`, and checks `--rm-type`; a bad path or a
wrong signature raises `ContractError` / `ConfigError` naming the flag before any engine work. Results are
cached per distinct set of those flag values, so every rollout reuses them. slime's own default paths
(`slime.rollout.sglang_rollout.generate_rollout`, `slime.rollout.sft_rollout.generate_rollout`, the
`filter_hub` filters, the on-policy distillation reward and post-process) are mapped to this package's
equivalents so existing launch scripts keep working.
Per-sample overrides (`sample.generate_function_path` / `sample.custom_rm_path`, set by eval datasets) are
resolved on first use and cached the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

from slime.sglang.rewards.hub import batched_rm_hub_reward, check_rm_type, rm_hub_reward
from slime.sglang.rollout.sample_hooks import SampleHook, load_sample_hooks
from slime.types import (
    ContractError,
    DynamicFilterFn,
    GenerateFn,
    GroupRewardFn,
    RewardFn,
    RolloutFn,
    Sample,
    resolve,
)

DEFAULT_ROLLOUT_PATH = "slime.sglang.rollout:generate_rollout"
SLIME_PATH_ALIASES: dict[str, str] = {
    "slime.rollout.sglang_rollout.generate_rollout": DEFAULT_ROLLOUT_PATH,
    "slime.rollout.sglang_rollout.generate": "slime.sglang.rollout:generate",
    "slime.rollout.sft_rollout.generate_rollout": "slime.sglang.rollout:sft_rollout",
    "slime.rollout.rm_hub.async_rm": "slime.sglang.rewards:rm_hub_reward",
    "slime.rollout.rm_hub.batched_async_rm": "slime.sglang.rewards:batched_rm_hub_reward",
    "slime.rollout.on_policy_distillation.reward_func": "slime.sglang.rewards.on_policy_distillation:reward_func",
    "slime.rollout.on_policy_distillation.post_process_rewards": (
        "slime.sglang.rewards.on_policy_distillation:post_process_rewards"
    ),
    "slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std": (
        "slime.buffer.filters:check_reward_nonzero_std"
    ),
    "slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std_with_fallback": (
        "slime.buffer.filters:check_reward_nonzero_std_with_fallback"
    ),
}
"""slime's built-in plugin paths -> the same function here."""


def _alias(path: str | None) -> str | None:
    return SLIME_PATH_ALIASES.get(path, path) if path else path


def accepts_keyword(fn: Callable[..., Any], name: str) -> bool:
    """Whether `fn` can be called with keyword `name` (named parameter or `**kwargs`)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any((p.name == name and p.kind is not p.POSITIONAL_ONLY) or p.kind is p.VAR_KEYWORD for p in params)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RolloutFunctions:
    """The resolved plugins of one run."""

    rollout_fn: RolloutFn
    """`--rollout-function-path` (default: this package's `generate_rollout`)."""
    eval_fn: RolloutFn
    """`--eval-function-path` (default: the rollout function)."""
    generate_fn: GenerateFn
    """`--custom-generate-function-path`, else the default `generate`."""
    generate_takes_evaluation: bool
    """The generate function accepts `evaluation=` (slime passes it only then)."""
    reward_fn: RewardFn | GroupRewardFn
    """`--custom-rm-path`, else the reward hub (`--rm-type`)."""
    custom_reward: bool
    """True when `reward_fn` came from `--custom-rm-path`."""
    group_rm: bool
    """`--group-rm`: `reward_fn` scores a whole group (a list of samples) at once."""
    dynamic_filter: DynamicFilterFn | None
    """`--dynamic-sampling-filter-path`, or None to keep every finished group."""
    sample_hooks: tuple[SampleHook, ...] = ()
    """`--rollout-sample-hook-path`, in order."""

    @classmethod
    def from_args(cls, args: Any) -> RolloutFunctions:
        """Resolve (or fetch from the cache) the plugins named by `args`.

        Raises:
            ContractError: a path does not import or its function has the wrong signature (names the flag).
            ConfigError: an unknown `--rm-type`, or remote_rm without `--rm-url`.
        """
        hooks = getattr(args, "rollout_sample_hook_path", None) or ()
        key = (
            _alias(getattr(args, "rollout_function_path", None)) or DEFAULT_ROLLOUT_PATH,
            _alias(getattr(args, "eval_function_path", None)),
            _alias(getattr(args, "custom_generate_function_path", None)),
            _alias(getattr(args, "custom_rm_path", None)),
            bool(getattr(args, "group_rm", False)),
            getattr(args, "rm_type", None),
            getattr(args, "rm_url", None),
            _alias(getattr(args, "dynamic_sampling_filter_path", None)),
            (hooks,) if isinstance(hooks, str) else tuple(hooks),
        )
        return _resolve(*key)

    def generate_fn_for(self, sample: Sample) -> tuple[GenerateFn, bool]:
        """The generate function for `sample` (its own override first) and whether it takes `evaluation=`."""
        if sample.generate_function_path:
            fn = resolve_plugin(sample.generate_function_path, GenerateFn, "Sample.generate_function_path")
            return fn, accepts_keyword(fn, "evaluation")
        return self.generate_fn, self.generate_takes_evaluation

    def reward_fn_for(self, sample: Sample) -> tuple[Any, bool]:
        """The reward function for `sample` (its own `custom_rm_path` first) and whether it is custom."""
        if sample.custom_rm_path:
            protocol = GroupRewardFn if self.group_rm else RewardFn
            return resolve_plugin(sample.custom_rm_path, protocol, "Sample.custom_rm_path"), True
        return self.reward_fn, self.custom_reward


@functools.lru_cache(maxsize=256)
def resolve_plugin(path: str, protocol: type, flag: str) -> Any:
    """`slime.types.resolve` with slime's aliases, cached by (path, protocol, flag)."""
    return resolve(_alias(path) or path, protocol, flag=flag)


@functools.lru_cache(maxsize=64)
def _resolve(
    rollout_path: str,
    eval_path: str | None,
    generate_path: str | None,
    rm_path: str | None,
    group_rm: bool,
    rm_type: str | None,
    rm_url: str | None,
    filter_path: str | None,
    hook_paths: tuple[str, ...],
) -> RolloutFunctions:
    rollout_fn = resolve_plugin(rollout_path, RolloutFn, "--rollout-function-path")
    eval_fn = resolve_plugin(eval_path, RolloutFn, "--eval-function-path") if eval_path else rollout_fn
    if generate_path:
        generate_fn = resolve_plugin(generate_path, GenerateFn, "--custom-generate-function-path")
    else:
        from slime.sglang.rollout.default_generate import generate as generate_fn
    if rm_path:
        reward_fn = resolve_plugin(rm_path, GroupRewardFn if group_rm else RewardFn, "--custom-rm-path")
    else:
        check_rm_type(rm_type, _UrlOnly(rm_url))
        reward_fn = batched_rm_hub_reward if group_rm else rm_hub_reward
    dynamic_filter = None
    if filter_path:
        dynamic_filter = resolve_plugin(filter_path, DynamicFilterFn, "--dynamic-sampling-filter-path")
    if not callable(rollout_fn) or not callable(generate_fn):
        raise ContractError("rollout and generate functions must be callable.")
    return RolloutFunctions(
        rollout_fn=rollout_fn,
        eval_fn=eval_fn,
        generate_fn=generate_fn,
        generate_takes_evaluation=accepts_keyword(generate_fn, "evaluation"),
        reward_fn=reward_fn,
        custom_reward=rm_path is not None,
        group_rm=group_rm,
        dynamic_filter=dynamic_filter,
        sample_hooks=load_sample_hooks(hook_paths),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _UrlOnly:
    rm_url: str | None
