"""SGLang's `/generate` wire format: building the request body and parsing the answer into `GenerateOutput`.

Shapes follow sglang 0.5.17 (`srt/managers/io_struct.py::GenerateReqInput`, `tokenizer_manager.py`):
`meta_info.output_token_logprobs` is a list of `[logprob, token_id, text_or_null]`, one per output token, and
`meta_info.finish_reason` is `{"type": "stop" | "length" | "abort", ...}`. Only fields sglang-router 0.3.2
forwards are sent (it re-serialises bodies through its schema and drops unknown ones). This module does no I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from slime.types import EngineError, FinishReason, GenerateOutput, SamplingParams

FINISH_REASONS: tuple[FinishReason, ...] = ("stop", "length", "abort")


def generate_body(
    input_ids: Sequence[int],
    sampling_params: SamplingParams | Mapping[str, Any],
    *,
    return_logprob: bool = True,
    rid: str | None = None,
) -> dict[str, Any]:
    """The JSON body of one `/generate` call on token ids (`rid` defaults to a fresh uuid, for aborts)."""
    params = sampling_params.to_sglang() if isinstance(sampling_params, SamplingParams) else dict(sampling_params)
    return {
        "rid": rid or uuid.uuid4().hex,
        "input_ids": [int(t) for t in input_ids],
        "sampling_params": params,
        "return_logprob": return_logprob,
    }


def parse_generate_response(body: Any, *, expect_logprobs: bool, source: str = "engine") -> GenerateOutput:
    """Turn a `/generate` answer into a `GenerateOutput`.

    Raises:
        EngineError: the answer is not SGLang's shape (missing ids, unknown finish reason, log-probs that do not
            line up with the output ids); the message names `source` and the offending field.
    """
    if not isinstance(body, Mapping):
        raise EngineError(f"{source}: /generate answered {type(body).__name__}, expected a JSON object")
    if "error" in body and "output_ids" not in body:
        raise EngineError(f"{source}: /generate failed: {body['error']}")
    meta = body.get("meta_info")
    ids = body.get("output_ids")
    if not isinstance(meta, Mapping) or not isinstance(ids, list):
        raise EngineError(f"{source}: /generate answer lacks `output_ids` / `meta_info` (keys: {sorted(body)})")
    finish = meta.get("finish_reason")
    kind = finish.get("type") if isinstance(finish, Mapping) else None
    if kind not in FINISH_REASONS:
        raise EngineError(f"{source}: finish_reason {finish!r} is not one of {FINISH_REASONS}")
    log_probs = _log_probs(meta, ids, source) if expect_logprobs else None
    version = meta.get("weight_version")
    return GenerateOutput(
        output_ids=tuple(int(t) for t in ids),
        output_log_probs=log_probs,
        finish_reason=cast(FinishReason, kind),
        text=str(body.get("text") or ""),
        weight_version=None if version is None else str(version),
        prompt_tokens=int(meta.get("prompt_tokens") or 0),
    )


def abort_message(body: Any) -> str | None:
    """The engine's message for an aborted answer (None for other answers)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("meta_info"), Mapping):
        return None
    finish = body["meta_info"].get("finish_reason")
    return str(finish.get("message")) if isinstance(finish, Mapping) and finish.get("type") == "abort" else None


def _log_probs(meta: Mapping[str, Any], ids: list[Any], source: str) -> tuple[float, ...]:
    entries = meta.get("output_token_logprobs")
    if not isinstance(entries, list) or len(entries) != len(ids):
        got = len(entries) if isinstance(entries, list) else entries
        raise EngineError(
            f"{source}: output_token_logprobs has {got} entries for {len(ids)} output ids; was return_logprob "
            "dropped on the way (an old router or a proxy)?"
        )
    # One answer holds a log-prob per output token (256 x 1024 per rollout batch on a GPU): check and convert the
    # whole list in C-level passes; the per-entry walk below runs only to name a bad entry.
    try:
        if [entry[1] for entry in entries] == ids:
            return tuple(map(float, [entry[0] for entry in entries]))
    except (TypeError, IndexError, KeyError, ValueError):
        pass
    for position, (entry, token) in enumerate(zip(entries, ids, strict=True)):
        if not isinstance(entry, list | tuple) or len(entry) < 2 or int(entry[1]) != int(token):
            raise EngineError(f"{source}: output_token_logprobs[{position}]={entry!r} does not match token {token}")
        if not isinstance(entry[0], int | float):
            raise EngineError(f"{source}: output_token_logprobs[{position}]={entry!r} has no numeric log-prob")
    return tuple(float(entry[0]) for entry in entries)
