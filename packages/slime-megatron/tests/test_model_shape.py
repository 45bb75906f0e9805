"""Model shape from the HF config: absent flags are filled, contradicting ones are refused (slime lets them pass)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoConfig

from slime.megatron import parse_megatron_args, resolve_model_shape
from slime.types import ConfigError


@pytest.fixture(scope="module")
def hf_config(tiny_qwen3_dir: Path):
    return AutoConfig.from_pretrained(tiny_qwen3_dir)


def test_absent_shape_flags_come_from_hf(hf_config) -> None:
    ns = resolve_model_shape(parse_megatron_args([])[0], hf_config)
    assert (ns.num_layers, ns.hidden_size, ns.ffn_hidden_size) == (2, 64, 128)
    assert (ns.num_attention_heads, ns.num_query_groups, ns.kv_channels, ns.vocab_size) == (4, 2, 16, 256)
    assert ns.group_query_attention and ns.swiglu and ns.qk_layernorm and not ns.add_bias_linear
    assert (ns.normalization, ns.norm_epsilon, ns.rotary_base, ns.position_embedding_type) == (
        "RMSNorm",
        1e-6,
        10000.0,
        "rope",
    )
    assert ns.untie_embeddings_and_output_weights


def test_consistent_flags_are_accepted(hf_config) -> None:
    argv = (
        "--num-layers 2 --hidden-size 64 --ffn-hidden-size 128 --swiglu --disable-bias-linear --qk-layernorm "
        "--num-query-groups 2 --kv-channels 16 --normalization RMSNorm --norm-epsilon 1e-6 --rotary-base 10000 "
        "--untie-embeddings-and-output-weights --vocab-size 256"
    ).split()
    ns = resolve_model_shape(parse_megatron_args(argv)[0], hf_config)
    assert ns.num_layers == 2


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--num-layers", "36"], "--num-layers"),
        (["--rotary-base", "1000000"], "--rotary-base"),
        (["--norm-epsilon", "1e-5"], "--norm-epsilon"),
        (["--num-query-groups", "8"], "--num-query-groups"),
        (["--add-qkv-bias"], "--add-qkv-bias"),
    ],
)
def test_contradicting_flag_is_an_error_naming_it(hf_config, argv: list[str], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag) as err:
        resolve_model_shape(parse_megatron_args(argv)[0], hf_config)
    assert "HF config has" in str(err.value) and "Drop these flags" in str(err.value)


def test_tied_embeddings_contradiction(tmp_path: Path) -> None:
    from slime_testkit.models import tiny_config

    config = tiny_config("qwen3", tie_word_embeddings=True)
    assert not resolve_model_shape(parse_megatron_args([])[0], config).untie_embeddings_and_output_weights
    with pytest.raises(ConfigError, match="--untie-embeddings-and-output-weights"):
        resolve_model_shape(parse_megatron_args(["--untie-embeddings-and-output-weights"])[0], config)


def test_qwen2_has_qkv_bias_and_no_qk_norm() -> None:
    from slime_testkit.models import tiny_config

    ns = resolve_model_shape(parse_megatron_args([])[0], tiny_config("qwen2"))
    assert ns.add_qkv_bias and not ns.qk_layernorm
