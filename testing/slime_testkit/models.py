"""Tiny random-init HF causal LMs (Qwen3, Qwen2, Llama) written as complete local checkpoints for tests.

A checkpoint folder holds `config.json`, `generation_config.json`, `model.safetensors` and the tiny
tokenizer, so it can stand in for a hub model anywhere a `--hf-checkpoint` path is expected. Nothing is
downloaded. This module does not train anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from slime_testkit.tokenizer import BOS_TOKEN_ID, EOS_TOKEN_ID, PAD_TOKEN_ID, VOCAB_SIZE, build_tokenizer

if TYPE_CHECKING:  # transformers is imported lazily: it is slow to import and only needed when building
    from transformers import PretrainedConfig, PreTrainedModel

Family = Literal["qwen3", "qwen2", "llama"]
FAMILIES: tuple[Family, ...] = ("qwen3", "qwen2", "llama")

NUM_ATTENTION_HEADS = 4
NUM_KEY_VALUE_HEADS = 2
NORM_WEIGHT_RANGE = (0.5, 1.5)
"""Norm weights are drawn from this uniform range (not left at 1.0), so a dropped or misnamed norm shows up."""


def tiny_config(family: Family = "qwen3", **overrides: Any) -> PretrainedConfig:
    """Return the transformers config of a tiny model of `family`.

    Defaults: vocab 256, hidden 64, intermediate 128, 2 layers, 4 attention heads and 2 KV heads (GQA) of
    head_dim 16, 2048 positions, rope_theta 10000, untied embeddings, bos/eos/pad ids of the tiny tokenizer.
    `head_dim` defaults to `hidden_size // num_attention_heads` and `intermediate_size` to `2 * hidden_size`,
    so overriding `hidden_size` alone stays consistent.

    Args:
        family: "qwen3", "qwen2" or "llama".
        **overrides: any config field, for example `num_hidden_layers=4` or `tie_word_embeddings=True`.

    Returns:
        A `Qwen3Config`, `Qwen2Config` or `LlamaConfig`.

    Raises:
        ValueError: for an unknown family, or a vocab too small for the tiny tokenizer.
    """
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    config_classes = {"qwen3": Qwen3Config, "qwen2": Qwen2Config, "llama": LlamaConfig}
    if family not in config_classes:
        raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    hidden_size = overrides.get("hidden_size", 64)
    num_heads = overrides.get("num_attention_heads", NUM_ATTENTION_HEADS)
    kwargs: dict[str, Any] = {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": 2,
        "num_attention_heads": num_heads,
        "num_key_value_heads": NUM_KEY_VALUE_HEADS,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "tie_word_embeddings": False,
        "bos_token_id": BOS_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_ID,
        "pad_token_id": PAD_TOKEN_ID,
    }
    if family != "qwen2":  # Qwen2Config has no head_dim field; it always uses hidden_size // num_heads.
        kwargs["head_dim"] = hidden_size // num_heads
    kwargs.update(overrides)
    if kwargs["vocab_size"] < VOCAB_SIZE:
        raise ValueError(
            f"`vocab_size` must be >= {VOCAB_SIZE}, the tiny tokenizer's size (got {kwargs['vocab_size']})"
        )
    return config_classes[family](**kwargs)


def build_model(
    out_dir: str | Path,
    family: Family = "qwen3",
    *,
    tie_word_embeddings: bool = False,
    seed: int = 0,
    num_layers: int = 2,
    hidden_size: int = 64,
    vocab_size: int = VOCAB_SIZE,
    dtype: torch.dtype | str = torch.float32,
    **config_overrides: Any,
) -> Path:
    """Write a random-init tiny checkpoint of `family`, with the tiny tokenizer, into `out_dir`.

    Weights use the model's own init under `torch.manual_seed(seed)` (the caller's RNG state is left as
    it was); then every RMSNorm weight is redrawn from U(0.5, 1.5) and every bias (Qwen2's q/k/v) from
    N(0, initializer_range), so that neither is a no-op. Same arguments give byte-identical files.

    Args:
        out_dir: the folder to write into; created if missing.
        family: "qwen3", "qwen2" or "llama".
        tie_word_embeddings: share `lm_head.weight` with `embed_tokens.weight` (then not saved separately).
        seed: the RNG seed of all weights.
        num_layers: decoder layers.
        hidden_size: model width; head_dim is `hidden_size // 4` and intermediate size `2 * hidden_size`.
        vocab_size: embedding rows; at least 256, the tokenizer's size.
        dtype: weight dtype as saved, a `torch.dtype` or its name ("bfloat16").
        **config_overrides: further config fields, passed to `tiny_config`.

    Returns:
        `out_dir` as a `Path`: a complete HF checkpoint for `AutoModelForCausalLM` and `AutoTokenizer`.
    """
    from transformers import GenerationConfig, LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM

    model_classes = {"qwen3": Qwen3ForCausalLM, "qwen2": Qwen2ForCausalLM, "llama": LlamaForCausalLM}
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    config = tiny_config(
        family,
        num_hidden_layers=num_layers,
        hidden_size=hidden_size,
        vocab_size=vocab_size,
        tie_word_embeddings=tie_word_embeddings,
        **config_overrides,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_classes[family](config)
        _randomize_norms_and_biases(model, std=config.initializer_range)
    model = model.to(torch_dtype).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_TOKEN_ID, eos_token_id=EOS_TOKEN_ID, pad_token_id=PAD_TOKEN_ID
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    build_tokenizer(out)
    return out


@torch.no_grad()
def _randomize_norms_and_biases(model: PreTrainedModel, *, std: float) -> None:
    low, high = NORM_WEIGHT_RANGE
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.weight.uniform_(low, high)
        elif isinstance(bias := getattr(module, "bias", None), torch.nn.Parameter):
            bias.normal_(0.0, std)
