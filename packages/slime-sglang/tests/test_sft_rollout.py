"""SFT data path: chat conversations -> tokens + assistant loss masks, from the tokenizer's own template."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

from slime.buffer import RolloutDataSource
from slime.sglang.rollout import chat_tokens_and_loss_mask, sft_rollout
from slime.sglang.rollout.runtime import load_tokenizer
from slime.types import ConfigError, DataError, Status

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "2 + 3 = 5"},
    {"role": "user", "content": "And 7 * 6?"},
    {"role": "assistant", "content": "42"},
]

# A Llama-3-style template: no {% generation %} markers, a different end-of-turn token than the eos of ChatML.
LLAMA_STYLE = (
    "{% for m in messages %}{{ '<|im_start|>' + m.role + ':' + m.content + '<|endoftext|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant:' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir: Path) -> Any:
    return load_tokenizer(str(tiny_tokenizer_dir))


def _trained_text(tokenizer: Any, ids: list[int], mask: list[int]) -> list[str]:
    spans, current = [], []
    for token, m in zip(ids, mask, strict=True):
        if m:
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    if current:
        spans.append(tokenizer.decode(current))
    return spans


def test_mask_covers_exactly_the_assistant_turns_with_their_end_token(tokenizer: Any) -> None:
    ids, mask = chat_tokens_and_loss_mask(tokenizer, CONVERSATION)
    assert len(ids) == len(mask)
    assert _trained_text(tokenizer, ids, mask) == ["2 + 3 = 5<|im_end|>", "42<|im_end|>"]
    full = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert tokenizer.decode(ids) == full


def test_mask_agrees_with_the_templates_generation_markers(tokenizer: Any) -> None:
    ids, mask = chat_tokens_and_loss_mask(tokenizer, CONVERSATION)
    reference = tokenizer.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert ids == list(reference["input_ids"])
    assert mask == list(reference["assistant_masks"])


def test_other_template_family_without_markers(tokenizer: Any) -> None:
    other = load_tokenizer.__wrapped__(tokenizer.name_or_path)  # a private copy: the template is changed
    other.chat_template = LLAMA_STYLE
    other.eos_token = "<|endoftext|>"
    ids, mask = chat_tokens_and_loss_mask(other, CONVERSATION)
    assert _trained_text(other, ids, mask) == ["2 + 3 = 5<|endoftext|>", "42<|endoftext|>"]


def test_step_loss_mask_excludes_a_turn_and_tools_reach_the_template(tokenizer: Any) -> None:
    messages = [dict(m) for m in CONVERSATION]
    messages[2]["step_loss_mask"] = 0
    tools = [{"type": "function", "function": {"name": "calc"}}]
    ids, mask = chat_tokens_and_loss_mask(tokenizer, messages, tools=tools)
    assert _trained_text(tokenizer, ids, mask) == ["42<|im_end|>"]
    assert "# Tools" in tokenizer.decode(ids)


def test_sft_rollout_builds_training_samples(tokenizer: Any, tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    rows = [{"messages": CONVERSATION}, {"messages": CONVERSATION[:3]}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    args = types.SimpleNamespace(
        prompt_data=str(data), input_key="messages", label_key=None, n_samples_per_prompt=1, rollout_batch_size=2,
        hf_checkpoint=tokenizer.name_or_path, apply_chat_template=True, apply_chat_template_kwargs={},
    )
    groups = sft_rollout(args, 0, RolloutDataSource.from_args(args))
    assert [len(g) for g in groups] == [1, 1]
    for (sample,) in groups:
        sample.validate()
        assert sample.status is Status.COMPLETED and sample.reward == 0.0
        assert sample.loss_mask[0] == 1 and sample.response_length == len(sample.loss_mask)
        assert sample.response.startswith("2 + 3 = 5<|im_end|>")
    assert groups.metrics["rollout/num_samples"] == 2.0
    with pytest.raises(ConfigError, match="needs 1"):
        sft_rollout(types.SimpleNamespace(**{**vars(args), "n_samples_per_prompt": 2}), 0, None)


def test_bad_sft_data_is_a_clear_error(tokenizer: Any) -> None:
    with pytest.raises(DataError, match="list of chat messages"):
        chat_tokens_and_loss_mask(tokenizer, ["hello"])  # type: ignore[list-item]
