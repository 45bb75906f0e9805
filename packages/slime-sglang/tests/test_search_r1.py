"""The Search-R1 example's parts: local search, action parsing, reward, and the turn loop's token bookkeeping.

The turn loop runs here against a scripted router (known tokens and log-probs) so every branch is checked
exactly; the same loop against real engines is `test_rollout.py::test_search_r1_multi_turn_masks_align...`.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slime.types import GenerateOutput, Sample, Status

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture(scope="module")
def search_r1() -> Iterator[types.ModuleType]:
    sys.path.insert(0, str(EXAMPLES))
    import search_r1.generate

    yield search_r1
    sys.path.remove(str(EXAMPLES))


def test_local_search_is_deterministic_and_relevant(search_r1: types.ModuleType) -> None:
    from search_r1.retrieval import LocalSearch, default_search, format_observation

    engine = default_search()
    hits = engine.search("capital of France", top_k=2)
    assert hits[0]["title"] == "Paris" and len(hits) == 2
    assert engine.search("capital of France", top_k=2) == hits
    assert engine.search("zzz unknown", top_k=2) == []
    assert format_observation([]) == "\n\n<information>No results.</information>\n\n"
    assert "Doc 1 (Title: Paris)" in format_observation(hits)
    with pytest.raises(ValueError):
        LocalSearch([])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>hmm</think><search> capital of France </search>", ("search", "capital of France")),
        ("<answer>Paris</answer>", ("answer", "Paris")),
        ("<search>a</search> then <answer> b </answer>", ("answer", "b")),
        ("no tags at all", (None, "")),
    ],
)
def test_parse_action(search_r1: types.ModuleType, text: str, expected: tuple[str | None, str]) -> None:
    assert search_r1.generate.parse_action(text) == expected


def test_reward_uses_the_last_answer_outside_observations(search_r1: types.ModuleType) -> None:
    from search_r1.reward import compute_score, reward_func

    assert compute_score("<answer>paris</answer>", ["Paris"]) == 1.0
    assert compute_score("<answer>Lyon</answer> no, <answer>The Paris</answer>", ["Paris"]) == 1.0
    assert compute_score("<information><answer>Paris</answer></information>", ["Paris"]) == 0.0
    assert compute_score("Paris", ["Paris"]) == 0.0
    assert asyncio.run(reward_func(None, Sample(response="<answer>1889</answer>", label=["1889"]))) == 1.0


def test_prepare_writes_prompt_rows(search_r1: types.ModuleType, tmp_path: Path) -> None:
    from search_r1.prepare import convert

    out = tmp_path / "rows.jsonl"
    assert convert(EXAMPLES / "search_r1" / "data.jsonl", out) == 4
    first = out.read_text().splitlines()[0]
    assert '"label": ["Paris"]' in first and "Question: What is the capital of France?" in first


class ScriptedRouter:
    """Stands in for `call_router`: each call answers the next scripted turn (text -> fake ids/log-probs)."""

    def __init__(self, tokenizer: Any, turns: list[tuple[str, str]]) -> None:
        self.tokenizer, self.turns, self.inputs, self.params = tokenizer, list(turns), [], []

    async def __call__(self, args: Any, input_ids: list[int], params: dict[str, Any]) -> GenerateOutput:
        self.inputs.append(list(input_ids))
        self.params.append(dict(params))
        text, finish = self.turns.pop(0)
        ids = self.tokenizer.encode(text, add_special_tokens=False)[: params["max_new_tokens"]]
        lps = [-0.1 * (i + 1) for i in range(len(ids))]
        return GenerateOutput(output_ids=tuple(ids), output_log_probs=tuple(lps), finish_reason=finish, text=text)


def _run(search_r1: types.ModuleType, tokenizer_dir: Path, turns: list[tuple[str, str]], budget: int = 400,
         sample: Sample | None = None) -> tuple[Sample, ScriptedRouter]:  # fmt: skip
    from slime.sglang.rollout import load_tokenizer

    tokenizer = load_tokenizer(str(tokenizer_dir))
    router = ScriptedRouter(tokenizer, turns)
    sample = sample or Sample(prompt=search_r1.generate.format_prompt("What is the capital of France?"))
    args = types.SimpleNamespace(hf_checkpoint=str(tokenizer_dir))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search_r1.generate, "call_router", router)
        out = asyncio.run(search_r1.generate.generate(args, sample, {"max_new_tokens": budget, "temperature": 1.0}))
    return out, router


def test_turn_loop_masks_tool_tokens_and_keeps_everything_aligned(search_r1: types.ModuleType,
                                                                   tiny_tokenizer_dir: Path) -> None:  # fmt: skip
    from search_r1.retrieval import default_search, format_observation

    from slime.sglang.rollout import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_tokenizer_dir))
    turns = [("<search> capital of France </search>", "stop"), ("<answer> Paris </answer>", "stop")]
    sample, router = _run(search_r1, tiny_tokenizer_dir, turns)
    sample.validate()
    observation = format_observation(default_search().search("capital of France", 2))
    model_1, obs, model_2 = (tokenizer.encode(t, add_special_tokens=False)
                             for t in (turns[0][0], observation, turns[1][0]))  # fmt: skip
    prompt_ids = tokenizer.encode(sample.prompt, add_special_tokens=False)
    assert sample.tokens == prompt_ids + model_1 + obs + model_2
    assert sample.loss_mask == [1] * len(model_1) + [0] * len(obs) + [1] * len(model_2)
    lps = [-0.1 * (i + 1) for i in range(len(model_1))] + [0.0] * len(obs) + [
        -0.1 * (i + 1) for i in range(len(model_2))
    ]
    assert sample.rollout_log_probs == pytest.approx(lps)
    assert sample.response == turns[0][0] + observation + turns[1][0]
    assert router.inputs == [prompt_ids, prompt_ids + model_1 + obs]  # token in: each turn continues the tokens
    assert router.params[0]["stop"] == ["</search>", "</answer>"]
    assert sample.status is Status.COMPLETED


def test_turn_loop_budget_abort_and_restart(search_r1: types.ModuleType, tiny_tokenizer_dir: Path) -> None:
    # The budget counts tool tokens too: after a search that leaves nothing, the sample is truncated.
    search = ("<search> capital of France </search>", "stop")
    sample, router = _run(search_r1, tiny_tokenizer_dir, [search, search], budget=20)
    assert sample.status is Status.TRUNCATED and len(router.inputs) == 1
    assert router.params[0]["max_new_tokens"] == 20
    # An aborted turn ends the episode with the partial output kept ...
    aborted, _ = _run(search_r1, tiny_tokenizer_dir, [("<search> capi", "abort")])
    assert aborted.status is Status.ABORTED and aborted.response_length > 0
    # ... and an aborted sample handed back by the buffer restarts from its prompt.
    restarted, router = _run(search_r1, tiny_tokenizer_dir, [("<answer>x</answer>", "stop")], sample=aborted)
    assert restarted.status is Status.COMPLETED and restarted.response == "<answer>x</answer>"
    assert router.inputs[0] == restarted.tokens[: restarted.prompt_length]
    # No action: the episode ends after one turn.
    done, router = _run(search_r1, tiny_tokenizer_dir, [("just text", "stop"), ("unused", "stop")])
    assert len(router.inputs) == 1 and done.loss_mask == [1] * done.response_length
