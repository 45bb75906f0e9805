"""Tokens and loss mask of a chat conversation for SFT, from the tokenizer's own chat template (any family).

slime hand-codes one mask generator per template family (`--loss-mask-type qwen|qwen3|...`), with reported
multi-turn bugs. Here the template itself says where each assistant turn is: for assistant message `i`,
the conversation rendered up to `i` with the generation prompt ends where the turn's content starts, and the
conversation rendered through `i` ends after the turn. The span between is trainable, cut after the last
end-of-turn token (the tokenizer's eos, e.g. `<|im_end|>`, `<|eot_id|>`) so template glue such as the newline
after it is not trained on, as a policy never generates it. Segments are tokenized separately, the way a
prompt and a generated response are at inference. This needs the template to render each conversation prefix
as a prefix of the whole; when it does not (templates that rewrite earlier turns), the template's own
`{% generation %}` markers are used (`return_assistant_tokens_mask`), and without them a `DataError` says
so. A message with `"step_loss_mask": 0` is not trained on. No model, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from slime.types import DataError


def _render(tokenizer: Any, messages: Sequence[Mapping[str, Any]], generation_prompt: bool, **kw: Any) -> str:
    return tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=generation_prompt, **kw
    )


def _trim_after_eos(text: str, start: int, end: int, eos: str | None) -> int:
    if eos:
        at = text.rfind(eos, start, end)
        if at >= 0:
            return at + len(eos)
    return end


def assistant_spans(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Any = None,
    template_kwargs: Mapping[str, Any] | None = None,
) -> tuple[str, list[tuple[int, int]]] | None:
    """The rendered conversation and the character spans of its trainable assistant turns.

    Returns None when the template does not render prefixes as prefixes of the whole conversation.
    """
    kw = {"tools": tools or None, **dict(template_kwargs or {})}
    full = _render(tokenizer, messages, False, **kw)
    eos = getattr(tokenizer, "eos_token", None)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant" or message.get("step_loss_mask", 1) == 0:
            continue
        before = _render(tokenizer, messages[:i], True, **kw) if i else ""
        through = _render(tokenizer, messages[: i + 1], False, **kw)
        if not (full.startswith(before) and full.startswith(through) and len(before) <= len(through)):
            return None
        start, end = len(before), len(through)
        spans.append((start, _trim_after_eos(full, start, end, eos)))
    return full, spans


def _tokenize_spans(tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    mask: list[int] = []
    cursor = 0
    for start, end in [*spans, (len(text), len(text))]:
        for piece, trainable in ((text[cursor:start], 0), (text[start:end], 1)):
            if piece:
                new = tokenizer.encode(piece, add_special_tokens=False)
                ids.extend(new)
                mask.extend([trainable] * len(new))
        cursor = end
    return ids, mask


def _generation_marker_mask(
    tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: Any, template_kwargs: Mapping[str, Any]
) -> tuple[list[int], list[int]]:
    trained = [dict(m) for m in messages if m.get("role") == "assistant" and m.get("step_loss_mask", 1) != 0]
    out = tokenizer.apply_chat_template(
        [dict(m) for m in messages], tools=tools or None, tokenize=True, return_dict=True,
        return_assistant_tokens_mask=True, **dict(template_kwargs),
    )  # fmt: skip
    mask = list(out.get("assistant_masks") or [])
    if trained and not any(mask):
        raise DataError(
            "the chat template rewrites earlier turns (a conversation prefix does not render as a prefix of "
            "the whole) and has no {% generation %} markers, so assistant spans cannot be found; use a template "
            "with {% generation %} blocks around assistant content."
        )
    if len(trained) != len([m for m in messages if m.get("role") == "assistant"]):
        raise DataError("step_loss_mask needs a template that renders conversation prefixes as prefixes.")
    return list(out["input_ids"]), [int(bool(m)) for m in mask]


def chat_tokens_and_loss_mask(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Any = None,
    template_kwargs: Mapping[str, Any] | None = None,
) -> tuple[list[int], list[int]]:
    """Token ids of the whole conversation and a 0/1 mask (1 = an assistant token to train on), same length.

    Raises:
        DataError: `messages` is not a list of role/content dicts, or the template gives no way to find turns.
    """
    if not isinstance(messages, Sequence) or not all(isinstance(m, Mapping) and "role" in m for m in messages):
        raise DataError("SFT data must be a list of chat messages like {'role': 'user', 'content': '...'}.")
    found = assistant_spans(tokenizer, messages, tools=tools, template_kwargs=template_kwargs)
    if found is None:
        return _generation_marker_mask(tokenizer, messages, tools, template_kwargs or {})
    text, spans = found
    return _tokenize_spans(tokenizer, text, spans)
