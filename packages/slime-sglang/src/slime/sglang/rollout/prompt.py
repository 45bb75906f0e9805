"""Prompt preparation for generation: render chat messages with the tokenizer's template, then tokenize.

A prompt that is a message list (the data source keeps `--apply-chat-template` prompts as messages) is
rendered with `tokenizer.apply_chat_template(..., add_generation_prompt=True)`, the sample's tools
(`metadata["tools"]`) and `--apply-chat-template-kwargs` (plus per-sample
`metadata["apply_chat_template_kwargs"]`), and `sample.prompt` becomes that string, as in slime, so custom
generate and reward functions see rendered text. String prompts are used as they are (they may already be
rendered: a buffered sample comes back with its rendered prompt). Tokens are `encode(text,
add_special_tokens=False)`: the template already holds any special tokens. No I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from slime.types import ConfigError, Sample


def chat_template_kwargs(args: Any, sample: Sample | None = None) -> dict[str, Any]:
    """`--apply-chat-template-kwargs` (a dict or a JSON string), updated by the sample's own kwargs."""
    raw = getattr(args, "apply_chat_template_kwargs", None) or {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--apply-chat-template-kwargs is not valid JSON ({exc.msg}): {raw!r}") from exc
    if not isinstance(raw, Mapping):
        raise ConfigError(f"--apply-chat-template-kwargs must be a JSON object, got {type(raw).__name__}.")
    kwargs = dict(raw)
    if sample is not None:
        kwargs.update((sample.metadata or {}).get("apply_chat_template_kwargs") or {})
    return kwargs


def render_messages(
    tokenizer: Any, messages: list[dict[str, Any]], *, tools: Any = None, template_kwargs: Mapping[str, Any] = ()
) -> str:
    """The prompt text of `messages` with the generation prompt appended (the assistant turn to write)."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError(
            "the prompt is a chat message list but the tokenizer has no chat template; use a checkpoint whose "
            "tokenizer_config.json has one, or give string prompts."
        )
    return tokenizer.apply_chat_template(
        messages, tools=tools or None, tokenize=False, add_generation_prompt=True, **dict(template_kwargs)
    )


def prepare_prompt(args: Any, tokenizer: Any, sample: Sample) -> None:
    """Render a message-list prompt to its string in place (no-op for string prompts)."""
    if isinstance(sample.prompt, list):
        sample.prompt = render_messages(
            tokenizer,
            sample.prompt,
            tools=(sample.metadata or {}).get("tools"),
            template_kwargs=chat_template_kwargs(args, sample),
        )


def prompt_token_ids(args: Any, tokenizer: Any, sample: Sample) -> list[int]:
    """The prompt's token ids (the prompt is rendered first when it is a message list)."""
    prepare_prompt(args, tokenizer, sample)
    if not isinstance(sample.prompt, str):
        raise ConfigError(f"sample {sample.index}: prompt is {type(sample.prompt).__name__}; need str or messages.")
    return list(tokenizer.encode(sample.prompt, add_special_tokens=False))
