"""Tests of slime_testkit: the tiny tokenizer, the tiny checkpoints and the conftest wiring."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from slime_testkit.models import FAMILIES, build_model, tiny_config
from slime_testkit.tokenizer import (
    BOS_TOKEN_ID,
    EOS_TOKEN_ID,
    IM_START_TOKEN_ID,
    PAD_TOKEN_ID,
    SPECIAL_TOKENS,
    VOCAB_SIZE,
    build_tokenizer,
)
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "5"},
    {"role": "user", "content": "And 7 * 6?"},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


# --- models -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_loads_and_gives_finite_logits(family: str, request: pytest.FixtureRequest) -> None:
    folder: Path = request.getfixturevalue(f"tiny_{family}_dir")
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["1 + 2 = 3", "The quick brown fox"], padding=True, return_tensors="pt")

    with torch.no_grad():
        logits = model(**batch).logits

    assert model.config.model_type == family
    assert logits.shape == (2, batch["input_ids"].shape[1], model.config.vocab_size)
    assert torch.isfinite(logits).all()
    assert model.dtype == torch.float32


@pytest.mark.parametrize("family", FAMILIES)
def test_config_is_tiny_gqa(family: str) -> None:
    config = tiny_config(family)
    head_dim = getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)  # Qwen2 has none

    assert (config.num_attention_heads, config.num_key_value_heads, head_dim) == (4, 2, 16)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (64, 2, VOCAB_SIZE)
    assert tiny_config(family, num_hidden_layers=3).num_hidden_layers == 3


def test_unknown_family_and_small_vocab_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown model family"):
        tiny_config("gpt2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vocab_size"):
        tiny_config("qwen3", vocab_size=128)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_gives_identical_files(family: str, tmp_path: Path) -> None:
    first = _files(build_model(tmp_path / "a", family, seed=7))
    second = _files(build_model(tmp_path / "b", family, seed=7))
    other_seed = _files(build_model(tmp_path / "c", family, seed=8))

    assert first == second
    assert other_seed["model.safetensors"] != first["model.safetensors"]
    assert other_seed["config.json"] == first["config.json"]


def test_build_leaves_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(tmp_path, "qwen3", seed=5)

    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_norms_and_biases_are_not_at_their_init_values(family: str, request: pytest.FixtureRequest) -> None:
    model = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(f"tiny_{family}_dir"))
    params = dict(model.named_parameters())
    norms = [p for name, p in params.items() if "norm" in name]
    biases = [p for name, p in params.items() if name.endswith(".bias")]

    assert norms
    for norm in norms:
        assert norm.min() >= 0.5 and norm.max() <= 1.5 and not torch.allclose(norm, torch.ones_like(norm))
    assert bool(biases) == (family == "qwen2")
    for bias in biases:
        assert bias.abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_tied_variant_shares_embeddings(family: str, tmp_path: Path) -> None:
    folder = build_model(tmp_path, family, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with safe_open(folder / "model.safetensors", framework="pt") as weights:
        names = set(weights.keys())

    assert model.config.tie_word_embeddings
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names


def test_untied_default_saves_lm_head(tiny_qwen3_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    with safe_open(tiny_qwen3_dir / "model.safetensors", framework="pt") as weights:
        names = set(weights.keys())

    assert not model.config.tie_word_embeddings
    assert "lm_head.weight" in names
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def test_dtype_and_size_arguments(tmp_path: Path) -> None:
    folder = build_model(tmp_path, "llama", dtype="bfloat16", num_layers=3, hidden_size=128, vocab_size=320)
    model = AutoModelForCausalLM.from_pretrained(folder)

    assert model.dtype == torch.bfloat16
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size) == (3, 128, 320)
    assert model.config.head_dim == 32


@pytest.mark.parametrize("family", FAMILIES)
def test_special_ids_agree_between_config_generation_config_and_tokenizer(
    family: str, request: pytest.FixtureRequest
) -> None:
    folder: Path = request.getfixturevalue(f"tiny_{family}_dir")
    config = AutoConfig.from_pretrained(folder)
    generation = GenerationConfig.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)

    expected = (BOS_TOKEN_ID, EOS_TOKEN_ID, PAD_TOKEN_ID)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == expected
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == expected
    assert (generation.bos_token_id, generation.eos_token_id, generation.pad_token_id) == expected
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|pad|>"
    assert len(tokenizer) <= config.vocab_size


# --- tokenizer ----------------------------------------------------------------------------------------------


def test_tokenizer_build_is_deterministic(tmp_path: Path) -> None:
    first = build_tokenizer(tmp_path / "a")
    second = build_tokenizer(tmp_path / "b")

    assert _files(first) == _files(second)
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()


def test_tokenizer_has_the_special_tokens_and_fits_the_vocab(tokenizer) -> None:
    assert [tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert len(tokenizer) <= VOCAB_SIZE
    assert max(tokenizer.get_vocab().values()) < VOCAB_SIZE
    assert tokenizer("hello")["input_ids"][0] != BOS_TOKEN_ID  # bos is declared, never added


@pytest.mark.parametrize(
    "text",
    [string.printable, "12 + 30 = 42", "  leading and trailing  ", "caf\u00e9 \u4f60\u597d \U0001f642", "", "\x00\x7f"],
)
def test_tokenizer_round_trips_examples(tokenizer, text: str) -> None:
    ids = tokenizer(text)["input_ids"]

    assert tokenizer.decode(ids) == text
    assert all(0 <= i < VOCAB_SIZE for i in ids)


@given(text=st.text())
def test_tokenizer_round_trips_any_text(tokenizer, text: str) -> None:
    ids = tokenizer(text)["input_ids"]

    assert tokenizer.decode(ids) == text
    assert all(0 <= i < VOCAB_SIZE for i in ids)


def test_chat_template_renders_chatml_with_generation_prompt(tokenizer) -> None:
    rendered = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)

    assert rendered == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
        "<|im_start|>assistant\n5<|im_end|>\n"
        "<|im_start|>user\nAnd 7 * 6?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert tokenizer.apply_chat_template(MESSAGES, tokenize=False).endswith("And 7 * 6?<|im_end|>\n")


def test_chat_template_tokenizes_to_special_ids(tokenizer) -> None:
    ids = tokenizer.apply_chat_template(MESSAGES[1:2], add_generation_prompt=True, return_dict=True)["input_ids"]

    assert ids[0] == IM_START_TOKEN_ID
    assert ids.count(IM_START_TOKEN_ID) == 2 and ids.count(EOS_TOKEN_ID) == 1
    assert all(0 <= i < VOCAB_SIZE for i in ids)
    assert tokenizer.decode(ids) == "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"


def test_chat_template_renders_tools_and_tool_calls(tokenizer) -> None:
    tool = {"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}
    call = {"type": "function", "function": {"name": "calc", "arguments": {"expression": "7 * 6"}}}
    messages = [
        {"role": "user", "content": "7 * 6?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "42"},
    ]

    rendered = tokenizer.apply_chat_template(messages, tools=[tool], tokenize=False)

    assert rendered == (
        "<|im_start|>system\n# Tools\n\n<tools>\n"
        '{"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}\n'
        "</tools><|im_end|>\n"
        "<|im_start|>user\n7 * 6?<|im_end|>\n"
        '<|im_start|>assistant\n\n<tool_call>\n{"name": "calc", "arguments": {"expression": "7 * 6"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>tool\n42<|im_end|>\n"
        "<|im_start|>assistant\n42<|im_end|>\n"
    )


def test_chat_template_rejects_a_late_system_message(tokenizer) -> None:
    with pytest.raises(Exception, match="system message"):
        tokenizer.apply_chat_template([*MESSAGES, {"role": "system", "content": "late"}], tokenize=False)


def test_assistant_tokens_mask_covers_responses_and_their_im_end(tokenizer) -> None:
    messages = [*MESSAGES, {"role": "assistant", "content": "42"}]

    out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    masked = [token for token, keep in zip(out["input_ids"], out["assistant_masks"], strict=True) if keep]

    assert tokenizer.decode(masked) == "5<|im_end|>42<|im_end|>"


# --- conftest wiring ----------------------------------------------------------------------------------------


def test_hypothesis_profile_is_loaded() -> None:
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    expected_max_examples = {"ci": 50, "dev": 500}.get(profile)
    if expected_max_examples is None:
        pytest.skip(f"HYPOTHESIS_PROFILE={profile!r} is not one of the profiles registered by conftest.py")

    assert settings.default.max_examples == expected_max_examples
    assert settings.default.deadline is None
    assert settings.default.derandomize == (profile == "ci")


@pytest.mark.gpu
def test_tiny_model_gives_the_same_logits_on_gpu(tiny_qwen3_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    input_ids = torch.tensor([[IM_START_TOKEN_ID, 40, 41, 42, EOS_TOKEN_ID]])

    with torch.no_grad():
        cpu_logits = model(input_ids).logits
        gpu_logits = model.to("cuda")(input_ids.to("cuda")).logits.cpu()

    torch.testing.assert_close(gpu_logits, cpu_logits, rtol=1e-4, atol=1e-4)


def test_rendezvous_port_is_free_and_below_the_ephemeral_range() -> None:
    import socket

    from slime_testkit.ports import HIGH, LOW, rendezvous_port

    port = rendezvous_port()
    assert LOW <= port < HIGH
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # still free: nothing holds it
    from pathlib import Path

    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")  # Linux; other systems keep the check above
    if ephemeral.exists():
        low, _ = (int(x) for x in ephemeral.read_text().split())
        assert HIGH <= low  # the kernel never hands these out for bind(0) or outgoing connections
