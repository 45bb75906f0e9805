"""Plugin paths of the rollout: loaded once by path, and a bad path or signature fails at start-up, clearly.

No engines are needed: `RolloutFunctions.from_args` (and `generate_rollout`, which calls it first) must fail
before any network call.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slime.buffer.filters import check_reward_nonzero_std
from slime.sglang.rewards import rm_hub_reward
from slime.sglang.rollout import (
    RolloutFunctions,
    eval_before_train,
    eval_datasets,
    eval_due,
    generate,
    generate_rollout,
    pass_at_k,
    sampling_params_from_args,
)
from slime.sglang.rollout.sample_hooks import apply_sample_hooks
from slime.types import ConfigError, ContractError, Sample

PLUGINS = textwrap.dedent(
    '''
    from slime.buffer.filters import DynamicFilterOutput

    async def generate_ok(args, sample, sampling_params, evaluation=False):
        return sample

    async def generate_plain(args, sample, sampling_params):
        return sample

    def generate_sync(args, sample, sampling_params):
        return sample

    async def generate_two_args(args, sample):
        return sample

    async def reward_ok(args, sample, **kwargs):
        return 1.0

    async def group_reward_ok(args, samples, **kwargs):
        return [1.0] * len(samples)

    def reward_sync(args, sample):
        return 1.0

    def filter_ok(args, samples, **kwargs):
        return True

    async def filter_async(args, samples, **kwargs):
        return True

    def rollout_ok(args, rollout_id, data_buffer, evaluation=False):
        return [["custom", rollout_id]]

    def rollout_one_arg(args):
        return []

    def hook_tag(args, sample, *, rollout_id):
        sample.metadata["hooked"] = rollout_id

    async def hook_replace(args, sample, **kwargs):
        return type(sample)(index=99)

    def hook_bad_return(args, sample):
        return "not a sample"

    def hook_no_args():
        pass
    '''
)


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "rollout_test_plugins.py").write_text(PLUGINS)
    sys.path.insert(0, str(folder))
    yield "rollout_test_plugins"
    sys.path.remove(str(folder))
    sys.modules.pop("rollout_test_plugins", None)


def _args(**kw: Any) -> argparse.Namespace:
    base = {
        "rollout_function_path": "slime.rollout.sglang_rollout.generate_rollout",
        "eval_function_path": None,
        "custom_generate_function_path": None,
        "custom_rm_path": None,
        "group_rm": False,
        "rm_type": "math",
        "rm_url": None,
        "dynamic_sampling_filter_path": None,
        "rollout_sample_hook_path": [],
        "rollout_batch_size": 2,
        "n_samples_per_prompt": 2,
        "rollout_max_response_len": 8,
    }
    base.update(kw)
    return argparse.Namespace(**base)


def test_defaults_and_slime_aliases_resolve_to_this_package() -> None:
    slime_filter = "slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std"
    args = _args(dynamic_sampling_filter_path=slime_filter)
    functions = RolloutFunctions.from_args(args)
    assert functions.rollout_fn is generate_rollout and functions.eval_fn is generate_rollout
    assert functions.generate_fn is generate and not functions.generate_takes_evaluation
    assert functions.reward_fn is rm_hub_reward and not functions.custom_reward
    assert functions.dynamic_filter is check_reward_nonzero_std
    assert RolloutFunctions.from_args(_args(dynamic_sampling_filter_path=slime_filter)) is functions  # cached


def test_custom_functions_load_by_path(plugins: str) -> None:
    functions = RolloutFunctions.from_args(
        _args(
            rollout_function_path=f"{plugins}:rollout_ok",
            eval_function_path=f"{plugins}.rollout_ok",
            custom_generate_function_path=f"{plugins}:generate_ok",
            custom_rm_path=f"{plugins}:group_reward_ok",
            group_rm=True,
            dynamic_sampling_filter_path=f"{plugins}:filter_ok",
            rollout_sample_hook_path=[f"{plugins}:hook_tag", f"{plugins}:hook_replace"],
        )
    )
    assert functions.rollout_fn(None, 7, None) == [["custom", 7]]
    assert functions.generate_fn.__name__ == "generate_ok" and functions.generate_takes_evaluation
    assert functions.custom_reward and functions.group_rm
    assert [h.kwargs for h in functions.sample_hooks] == [("rollout_id",), ("rollout_id", "evaluation")]
    sample = Sample(index=1)
    out = asyncio.run(apply_sample_hooks(functions.sample_hooks, None, sample, rollout_id=3, evaluation=False))
    assert sample.metadata["hooked"] == 3 and out.index == 99


BAD_PATHS = [
    ({"rollout_function_path": "no_such_module_xyz:fn"}, ContractError, r"--rollout-function-path .*does not import"),
    ({"rollout_function_path": "{p}:rollout_one_arg"}, ContractError, r"--rollout-function-path .*RolloutFn"),
    ({"eval_function_path": "{p}:missing"}, ContractError, r"--eval-function-path .*has no attribute 'missing'"),
    ({"custom_generate_function_path": "{p}:generate_sync"}, ContractError, r"must be `async def`"),
    ({"custom_generate_function_path": "{p}:generate_two_args"}, ContractError, r"cannot take the 3 positional"),
    ({"custom_rm_path": "{p}:reward_sync"}, ContractError, r"--custom-rm-path .*must be `async def`"),
    ({"dynamic_sampling_filter_path": "{p}:filter_async"}, ContractError, r"--dynamic-sampling-filter-path"),
    ({"rollout_sample_hook_path": ["{p}:hook_no_args"]}, ContractError, r"--rollout-sample-hook-path .*must accept"),
    ({"rm_type": "mathh"}, ConfigError, r"--rm-type is 'mathh'"),
    ({"rm_type": "remote_rm"}, ConfigError, r"needs --rm-url"),
    ({"custom_generate_function_path": "not a path"}, ContractError, r"must name a module and an attribute"),
]


@pytest.mark.parametrize(("overrides", "error", "message"), BAD_PATHS)
def test_bad_plugins_fail_at_startup_naming_the_flag(plugins: str, overrides: dict, error: type, message: str) -> None:
    fixed = {k: ([x.format(p=plugins) for x in v] if isinstance(v, list) else v.format(p=plugins))
             for k, v in overrides.items()}  # fmt: skip
    with pytest.raises(error, match=message):
        RolloutFunctions.from_args(_args(**fixed))
    # The synchronous entry resolves first, so it fails the same way before touching any engine.
    with pytest.raises(error, match=message):
        generate_rollout(_args(**fixed, sglang_router_ip=None), 0, None)


def test_hook_returning_something_else_is_a_contract_error(plugins: str) -> None:
    functions = RolloutFunctions.from_args(_args(rollout_sample_hook_path=f"{plugins}:hook_bad_return"))
    with pytest.raises(ContractError, match="returns a Sample or None"):
        asyncio.run(apply_sample_hooks(functions.sample_hooks, None, Sample(), rollout_id=0, evaluation=False))


def test_sampling_params_from_flags_and_eval_overrides() -> None:
    args = _args(
        rollout_temperature=0.8, rollout_top_p=0.9, rollout_top_k=5, rollout_stop=["</s>"],
        rollout_stop_token_ids=[2], rollout_skip_special_tokens=True,
        eval_temperature=0.1, eval_top_p=None, eval_max_response_len=4,
    )  # fmt: skip
    train = sampling_params_from_args(args).to_sglang()
    assert train == {
        "max_new_tokens": 8, "temperature": 0.8, "top_p": 0.9, "top_k": 5, "skip_special_tokens": True,
        "no_stop_trim": True, "stop": ["</s>"], "stop_token_ids": [2],
    }  # fmt: skip
    evaluation = sampling_params_from_args(args, evaluation=True)
    assert (evaluation.max_new_tokens, evaluation.temperature, evaluation.top_p) == (4, 0.1, 0.9)
    with pytest.raises(ConfigError, match="--rollout-max-response-len"):
        sampling_params_from_args(_args(rollout_max_response_len=None))


def test_eval_schedule_and_dataset_pairs(tmp_path: Path) -> None:
    args = _args(eval_interval=2, eval_prompt_data=["a", "a.jsonl", "b", "b.jsonl"], skip_eval_before_train=False)
    assert eval_datasets(args) == [("a", "a.jsonl"), ("b", "b.jsonl")]
    assert [eval_due(args, i) for i in range(4)] == [False, True, False, True]
    assert eval_due(args, 2, num_rollout_per_epoch=3) and eval_before_train(args)
    assert eval_datasets(_args(eval_prompt_data=["only.jsonl"])) == [("aime", "only.jsonl")]
    with pytest.raises(ConfigError, match="name path"):
        eval_datasets(_args(eval_prompt_data=["a", "a.jsonl", "b"]))


@pytest.mark.parametrize(("n", "c", "k", "expected"), [(4, 0, 1, 0.0), (4, 4, 2, 1.0), (4, 1, 1, 0.25), (4, 1, 2, 0.5),
                                                       (4, 2, 2, 1 - 1 / 6), (5, 3, 3, 1.0)])  # fmt: skip
def test_pass_at_k_matches_the_combinatorial_definition(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected)
