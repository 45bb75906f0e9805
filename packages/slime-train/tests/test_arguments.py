"""slime's CLI: slime names and defaults, pass-through routing, unknown flags with suggestions."""

from __future__ import annotations

import pytest

from slime.train.arguments import parse_args
from slime.train.flag_table import FLAGS
from slime.types import ConfigError


def test_every_flag_has_slime_name_and_unique_attr():
    names = [f.name for f in FLAGS]
    assert len(names) == len(set(names))
    attrs = [f.attr for f in FLAGS]
    assert len(attrs) == len(set(attrs))


def test_slime_defaults():
    args = parse_args(["--rollout-batch-size", "4"]).args
    assert args.eps_clip == 0.2 and args.eps_clip_high is None and args.kl_loss_type == "k1"
    assert args.advantage_estimator == "grpo" and args.n_samples_per_prompt == 1 and args.rollout_seed == 42
    assert args.update_weight_buffer_size == 512 * 1024**2 and args.tis_clip == 2.0 and args.lr == 1e-6
    assert args.grpo_std_normalization is True and args.rewards_normalization is True
    assert args.input_key == "input" and args.metadata_key == "metadata" and args.tool_key == "tools"
    assert args.sglang_server_concurrency == 512 and args.offload_train is None


def test_store_false_and_json_flags():
    parsed = parse_args(
        ["--disable-grpo-std-normalization", "--apply-chat-template-kwargs", '{"enable_thinking": false}']
    )
    assert parsed.args.grpo_std_normalization is False
    assert parsed.args.apply_chat_template_kwargs == {"enable_thinking": False}
    assert parsed.explicit >= {"grpo_std_normalization", "apply_chat_template_kwargs"}


def test_passthrough_routing():
    parsed = parse_args(
        ["--sglang-mem-fraction-static", "0.7", "--router-policy", "round_robin", "--tensor-model-parallel-size", "2"],
        is_megatron_flag=lambda name: name == "--tensor-model-parallel-size",
    )
    assert parsed.sglang_argv == ("--sglang-mem-fraction-static", "0.7", "--router-policy", "round_robin")
    assert parsed.megatron_argv == ("--tensor-model-parallel-size", "2")


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("--rollout-batch-sise", "--rollout-batch-size"),
        ("--n-sample-per-prompt", "--n-samples-per-prompt"),
        ("--eps-clip-hihg", "--eps-clip-high"),
        ("--use-kl-los", "--use-kl-loss"),
    ],
)
def test_typo_is_an_error_with_suggestion(typo, suggestion):
    with pytest.raises(ConfigError, match=f"unknown flag '{typo}'.*Did you mean '{suggestion}'"):
        parse_args([typo, "1"])


def test_megatron_names_help_suggest():
    with pytest.raises(ConfigError, match="--tensor-model-parallel-size"):
        parse_args(["--tensor-model-paralel-size", "2"], megatron_flag_names=["--tensor-model-parallel-size"])


def test_bad_value_and_positional():
    with pytest.raises(ConfigError):
        parse_args(["--rollout-batch-size", "many"])
    with pytest.raises(ConfigError, match="positional"):
        parse_args(["train.py"])
