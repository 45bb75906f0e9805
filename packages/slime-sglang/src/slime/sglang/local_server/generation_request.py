"""`GenerationRequest`: one `/generate` call inside the local server, from its JSON body to its JSON answer.

It parses SGLang's request fields, tracks the tokens and log-probs produced so far, decides when the request
is finished (SGLang's order: length, then stop string, then stop token; `ignore_eos` disables token stops) and
renders SGLang's response (`text`, `output_ids`, `meta_info`). With `return_logprob` and `logprob_start_len=L`
(sglang 0.5.17 `scheduler.py` / `logprob_result_processor.py`) `meta_info.input_token_logprobs` has one
`[logprob, token_id, null]` entry per input token from position L on, the first logprob always null, entry j
the log-prob of `input_ids[L + j]` given the tokens before it (no temperature); L = -1 (the default) means
none. It does not run the model or sample.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import torch

from slime.sglang.local_server.sampling import RowSampling

IMPLEMENTED_SAMPLING_KEYS = frozenset(
    {
        "max_new_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "stop_token_ids",
        "ignore_eos",
        "skip_special_tokens",
        "no_stop_trim",
        "sampling_seed",
    }
)
# SGLang sampling keys the local server accepts only at their default value (anything else would be silently wrong).
DEFAULT_ONLY_SAMPLING_KEYS: Mapping[str, Any] = {
    "min_p": 0.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "repetition_penalty": 1.0,
    "min_new_tokens": 0,
    "n": 1,
    "json_schema": None,
    "regex": None,
    "ebnf": None,
    "structural_tag": None,
    "stop_regex": None,
    "logit_bias": None,
    "custom_params": None,
    "spaces_between_special_tokens": True,
    "stream_interval": None,
}


class RequestError(ValueError):
    """A `/generate` body the local server cannot serve; answered with HTTP 400 and this message."""


@dataclasses.dataclass(slots=True)
class GenerationRequest:
    """State of one request; the scheduler thread appends tokens, any thread may set `abort_message`."""

    rid: str
    input_ids: list[int]
    max_new_tokens: int
    sampling: RowSampling
    stop_strs: tuple[str, ...] = ()
    stop_tail_tokens: int = 0
    stop_token_ids: frozenset[int] = frozenset()
    skip_special_tokens: bool = True
    no_stop_trim: bool = False
    return_logprob: bool = False
    logprob_start_len: int = 0
    """First input position reported in `input_token_logprobs` (`len(input_ids)`: none), already resolved."""
    input_logprobs: list[float] = dataclasses.field(default_factory=list)
    """Log-probs of `input_ids[logprob_start_len + 1:]`, filled by the scheduler when `needs_input_logprobs`."""
    output_ids: list[int] = dataclasses.field(default_factory=list)
    output_logprobs: list[float] = dataclasses.field(default_factory=list)
    finish_reason: dict[str, Any] | None = None
    abort_message: str | None = None
    error: str | None = None
    """Set when the server failed the request (model error, shutdown); answered with HTTP 500."""
    created: float = dataclasses.field(default_factory=time.monotonic)
    on_done: Callable[[GenerationRequest], None] | None = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def needs_input_logprobs(self) -> bool:
        """Whether the model must score input tokens (more than the always-null first entry)."""
        return self.return_logprob and self.logprob_start_len < len(self.input_ids) - 1

    def append(self, token: int, logprob: float, tokenizer: Any) -> None:
        """Record one sampled token and set `finish_reason` when the request is complete."""
        self.output_ids.append(token)
        self.output_logprobs.append(logprob)
        if len(self.output_ids) >= self.max_new_tokens:
            self.finish_reason = {"type": "length", "length": self.max_new_tokens}
        elif self.stop_strs and (matched := self._matched_stop_str(tokenizer)) is not None:
            self.finish_reason = {"type": "stop", "matched": matched}
        elif token in self.stop_token_ids:
            self.finish_reason = {"type": "stop", "matched": token}

    def abort(self, message: str) -> None:
        self.finish_reason = {"type": "abort", "message": message, "status_code": None, "err_type": None}

    def response(self, tokenizer: Any, weight_version: str) -> dict[str, Any]:
        """SGLang's `/generate` answer for this (finished) request."""
        meta: dict[str, Any] = {
            "id": self.rid,
            "finish_reason": self.finish_reason,
            "prompt_tokens": len(self.input_ids),
            "completion_tokens": len(self.output_ids),
            "cached_tokens": 0,
            "weight_version": weight_version,
            "e2e_latency": time.monotonic() - self.created,
        }
        if self.return_logprob:
            inputs = self.input_ids[self.logprob_start_len :]
            values = [None, *self.input_logprobs] if inputs else []
            meta["input_token_logprobs"] = [[lp, tok, None] for lp, tok in zip(values, inputs, strict=True)]
            meta["output_token_logprobs"] = [
                [lp, tok, None] for lp, tok in zip(self.output_logprobs, self.output_ids, strict=True)
            ]
            meta["output_token_logprobs_length"] = len(self.output_ids)
        return {"text": self._text(tokenizer), "output_ids": list(self.output_ids), "meta_info": meta}

    def _matched_stop_str(self, tokenizer: Any) -> str | None:
        tail = tokenizer.decode(self.output_ids[-self.stop_tail_tokens :])
        return next((s for s in self.stop_strs if s in tail), None)

    def _text(self, tokenizer: Any) -> str:
        matched = (self.finish_reason or {}).get("matched")
        ids = self.output_ids
        if isinstance(matched, int) and not self.no_stop_trim and ids:
            ids = ids[:-1]
        text = tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)
        if isinstance(matched, str) and (pos := text.find(matched)) >= 0:
            text = text[: pos + len(matched)] if self.no_stop_trim else text[:pos]
        return text


def parse_generate_body(
    body: Any, *, tokenizer: Any, eos_token_ids: frozenset[int], vocab_size: int
) -> GenerationRequest:
    """Build a request from SGLang's `/generate` JSON (single prompt only).

    Raises:
        RequestError: a malformed body, a batch, a stream, or a sampling option the local server does not implement.
    """
    if not isinstance(body, Mapping):
        raise RequestError("the /generate body must be a JSON object")
    if body.get("stream"):
        raise RequestError("the local server does not stream; send stream=false")
    input_ids = _input_ids(body, tokenizer, vocab_size)
    params = body.get("sampling_params") or {}
    if not isinstance(params, Mapping):
        raise RequestError("sampling_params must be a JSON object (batched requests are not supported)")
    _check_sampling_keys(params)
    try:
        sampling = _row_sampling(params)
        max_new_tokens = int(params.get("max_new_tokens", 128))
    except (TypeError, ValueError) as exc:
        raise RequestError(f"bad sampling_params: {exc}") from exc
    if max_new_tokens < 0:
        raise RequestError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    stop = params.get("stop") or ()
    stop_strs = (stop,) if isinstance(stop, str) else tuple(str(s) for s in stop)
    stop_ids = frozenset(int(t) for t in params.get("stop_token_ids") or ())
    return GenerationRequest(
        rid=str(body.get("rid") or uuid.uuid4().hex),
        input_ids=input_ids,
        max_new_tokens=max_new_tokens,
        sampling=sampling,
        stop_strs=stop_strs,
        stop_tail_tokens=1 + max((len(tokenizer.encode(s, add_special_tokens=False)) for s in stop_strs), default=0),
        stop_token_ids=frozenset() if params.get("ignore_eos") else stop_ids | eos_token_ids,
        skip_special_tokens=bool(params.get("skip_special_tokens", True)),
        no_stop_trim=bool(params.get("no_stop_trim", False)),
        return_logprob=bool(body.get("return_logprob")),
        logprob_start_len=_logprob_start_len(body, len(input_ids)),
    )


def _logprob_start_len(body: Mapping[str, Any], num_input: int) -> int:
    """SGLang's resolution: ignored without `return_logprob`; -1 (the default) means no input positions."""
    start = body.get("logprob_start_len")
    if not body.get("return_logprob") or start is None or start == -1:
        return num_input
    if not isinstance(start, int) or isinstance(start, bool) or start < -1:
        raise RequestError(f"logprob_start_len must be an int >= -1, got {start!r}")
    if start > num_input:
        raise RequestError(
            f"logprob_start_len={start} is higher than the number of input tokens {num_input}. "
            "Please use a smaller logprob_start_len."
        )
    return start


def _input_ids(body: Mapping[str, Any], tokenizer: Any, vocab_size: int) -> list[int]:
    ids, text = body.get("input_ids"), body.get("text")
    if ids is None and text is None:
        raise RequestError("send `input_ids` (a list of token ids) or `text`")
    if ids is None:
        if not isinstance(text, str):
            raise RequestError("`text` must be one string (batched requests are not supported)")
        ids = tokenizer.encode(text)
    if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise RequestError("`input_ids` must be a non-empty flat list of ints (batched requests are not supported)")
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        raise RequestError(f"input_ids {bad[:5]} are outside the vocabulary [0, {vocab_size})")
    return ids


def _check_sampling_keys(params: Mapping[str, Any]) -> None:
    for key, value in params.items():
        if key in IMPLEMENTED_SAMPLING_KEYS:
            continue
        if key not in DEFAULT_ONLY_SAMPLING_KEYS:
            raise RequestError(f"unknown sampling_params key {key!r}")
        if value is not None and value != DEFAULT_ONLY_SAMPLING_KEYS[key]:
            raise RequestError(f"the local server does not implement sampling_params.{key}={value!r}; leave it unset")


def _row_sampling(params: Mapping[str, Any]) -> RowSampling:
    temperature = float(params.get("temperature", 1.0) if params.get("temperature") is not None else 1.0)
    top_p = float(params.get("top_p") if params.get("top_p") is not None else 1.0)
    top_k = int(params.get("top_k") if params.get("top_k") is not None else -1)
    if temperature < 0 or not 0 < top_p <= 1 or top_k == 0 or top_k < -1:
        raise ValueError(
            f"need temperature >= 0, top_p in (0, 1], top_k -1 or >= 1 (got {temperature}, {top_p}, {top_k})"
        )
    seed = params.get("sampling_seed")
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    return RowSampling(temperature=temperature, top_p=top_p, top_k=top_k, generator=generator)
