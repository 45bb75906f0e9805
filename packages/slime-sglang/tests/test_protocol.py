"""Parsing SGLang's `/generate` answers: the happy path and every malformed shape an engine could send."""

from __future__ import annotations

from typing import Any

import pytest

from slime.sglang.protocol import abort_message, generate_body, parse_generate_response
from slime.types import EngineError, SamplingParams


def answer(**meta: Any) -> dict[str, Any]:
    base = {"finish_reason": {"type": "length", "length": 2}, "prompt_tokens": 3, "weight_version": "7",
            "output_token_logprobs": [[-0.5, 11, None], [-1.5, 12, None]]}  # fmt: skip
    return {"text": "ab", "output_ids": [11, 12], "meta_info": {**base, **meta}}


def test_generate_body_uses_sglang_names_and_a_fresh_rid() -> None:
    body = generate_body([1, 2], SamplingParams(max_new_tokens=4, stop=("x",), stop_token_ids=(9,)))
    assert body["input_ids"] == [1, 2] and body["return_logprob"] is True and len(body["rid"]) == 32
    assert body["sampling_params"]["stop"] == ["x"] and body["sampling_params"]["stop_token_ids"] == [9]
    assert generate_body([1], {"max_new_tokens": 1})["rid"] != body["rid"]


def test_parse_happy_path() -> None:
    out = parse_generate_response(answer(), expect_logprobs=True)
    assert out.output_ids == (11, 12) and out.output_log_probs == (-0.5, -1.5)
    assert (out.finish_reason, out.text, out.weight_version, out.prompt_tokens) == ("length", "ab", "7", 3)
    aborted = answer(finish_reason={"type": "abort", "message": "Abort by user"})
    assert parse_generate_response(aborted, expect_logprobs=False).finish_reason == "abort"
    assert abort_message(aborted) == "Abort by user" and abort_message(answer()) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object"),
        ({"error": {"message": "boom"}}, "boom"),
        ({"text": "x"}, "lacks `output_ids`"),
        (answer(finish_reason={"type": "eos"}), "not one of"),
        (answer(finish_reason=None), "not one of"),
        (answer(output_token_logprobs=[[-0.5, 11, None]]), "1 entries for 2 output ids"),
        (answer(output_token_logprobs=None), "was return_logprob dropped"),
        (answer(output_token_logprobs=[[-0.5, 11, None], [-1.5, 99, None]]), r"\[1\].*does not match token 12"),
        (answer(output_token_logprobs=[[-0.5, 11, None], [-1.5]]), r"\[1\]=\[-1.5\] does not match token 12"),
        (answer(output_token_logprobs=[[-0.5, 11, None], None]), r"\[1\]=None does not match token 12"),
        (answer(output_token_logprobs=[[-0.5, 11, None], ["x", 12, None]]), r"\[1\].*has no numeric log-prob"),
    ],
)
def test_malformed_answers_raise_engine_error(body: Any, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        parse_generate_response(body, expect_logprobs=True, source="http://e")
