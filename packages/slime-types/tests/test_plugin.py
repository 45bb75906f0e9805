"""Plugin resolution by dotted path with signature checks against the seam Protocols."""

from __future__ import annotations

import sys
import textwrap

import pytest

from slime.types import (
    BufferFilterFn,
    ContractError,
    DynamicFilterFn,
    GenerateFn,
    PolicyTrainer,
    RewardFn,
    check_conformance,
    load_object,
    resolve,
)


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "my_plugins.py").write_text(
        textwrap.dedent("""
        async def generate(args, sample, sampling_params):
            return sample
        async def reward_func(args, sample, **kwargs):
            return 1.0
        def sync_reward(args, sample):
            return 1.0
        def pop_first(args, rollout_id, buffer, num_samples):
            return buffer[:num_samples]
        def keep(args, samples, **kwargs):
            return True
        def too_few(args):
            return True
        class Holder:
            @staticmethod
            def keep(args, samples):
                return True
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_plugins"
    sys.modules.pop("my_plugins", None)


@pytest.mark.parametrize(
    ("attr", "protocol"),
    [("generate", GenerateFn), ("reward_func", RewardFn), ("pop_first", BufferFilterFn), ("keep", DynamicFilterFn)],
)
def test_good_plugins_resolve_with_colon_and_dot(plugin_module, attr, protocol):
    assert resolve(f"{plugin_module}:{attr}", protocol) is resolve(f"{plugin_module}.{attr}", protocol)


def test_nested_attribute(plugin_module):
    assert resolve(f"{plugin_module}:Holder.keep", DynamicFilterFn)(None, []) is True


def test_sync_function_for_async_protocol_names_both_signatures(plugin_module):
    with pytest.raises(ContractError) as info:
        resolve(f"{plugin_module}:sync_reward", RewardFn, flag="--custom-rm-path")
    text = str(info.value)
    assert "--custom-rm-path" in text and "must be `async def`" in text
    assert "expected: async def fn(args" in text and "actual:   sync_reward(args, sample)" in text


def test_too_few_parameters(plugin_module):
    with pytest.raises(ContractError, match="cannot take the 2 positional arguments"):
        resolve(f"{plugin_module}:too_few", DynamicFilterFn)


@pytest.mark.parametrize(
    ("path", "needle"),
    [("no_such_module_xyz:fn", "does not import"), ("my_plugins:nope", "has no attribute 'nope'"), ("", "dotted path")],
)
def test_bad_paths(plugin_module, path, needle):
    with pytest.raises(ContractError, match=needle):
        load_object(path)


def test_component_conformance():
    class Half:
        def train(self, rollout_id, batch):
            return {}

    with pytest.raises(ContractError, match="export_weights"):
        check_conformance(Half(), PolicyTrainer)
