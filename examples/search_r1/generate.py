"""Search-R1-style multi-turn generation: model -> search tool -> observation -> model ..., for slime's rollout.

Use with `--custom-generate-function-path search_r1.generate:generate` (put `examples/` on PYTHONPATH).
Each model turn is one token-in/token-out `/generate` call through the router, continuing from
`sample.tokens`, so the model sees exactly the tokens it is trained on (no re-tokenization drift). The
turn stops at `</search>` or `</answer>` (or at the per-turn cap). A `<search>query</search>` runs the
local search and appends its `<information>` block as tool tokens: loss mask 0 and log-prob 0.0, while the
model's own tokens get mask 1 and the engine's log-probs (`Sample.append_response` keeps them aligned).
The episode ends on an answer, on a turn without a search, after `MAX_TURNS`, when the response budget
(`max_new_tokens`, counted over all turns, tool tokens included) runs out, or when the rollout aborts the
request. A sample that comes back aborted from the partial-rollout buffer restarts from its prompt.
"""

from __future__ import annotations

import re
from typing import Any

from search_r1.retrieval import default_search, format_observation
from slime.sglang.rollout import apply_output, call_router, load_tokenizer
from slime.types import Sample, Status

MAX_TURNS = 3
"""Model turns per episode (the last one cannot search any more)."""
TOP_K = 2
"""Passages per search."""
TURN_TOKENS = 256
"""Most tokens one model turn may generate (override with `args.search_r1_turn_tokens`)."""
STOP = ("</search>", "</answer>")

PROMPT_TEMPLATE = (
    "Answer the question below. Think inside <think> </think>. When you need a fact, write a search query as "
    "<search> query </search>; the results come back inside <information> </information>. Search as often as "
    "needed, then give only the final answer as <answer> answer </answer>.\nQuestion: {question}\n"
)
_ACTION = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)


def format_prompt(question: str) -> str:
    """The instruction prompt for one question (what the data rows' `prompt` holds)."""
    return PROMPT_TEMPLATE.format(question=question.strip())


def parse_action(text: str) -> tuple[str | None, str]:
    """The last `<search>` / `<answer>` action in one model turn: ("search", query), ("answer", text), (None, "")."""
    found = _ACTION.findall(text)
    if not found:
        return None, ""
    action, content = found[-1]
    return action, content.strip()


async def generate(args: Any, sample: Sample, sampling_params: dict[str, Any]) -> Sample:
    """Run one search-augmented episode for `sample` (see the module docstring)."""
    tokenizer = load_tokenizer(args.hf_checkpoint)
    if sample.status is Status.ABORTED:
        sample.reset_for_retry()
    if not sample.tokens:
        sample.tokens = tokenizer.encode(sample.prompt, add_special_tokens=False)
    budget = int(sampling_params["max_new_tokens"])
    turn_cap = int(getattr(args, "search_r1_turn_tokens", None) or TURN_TOKENS)
    for _ in range(MAX_TURNS):
        remaining = budget - sample.response_length
        if remaining <= 0:
            sample.status = Status.TRUNCATED
            break
        params = {**sampling_params, "max_new_tokens": min(remaining, turn_cap), "stop": list(STOP)}
        output = await call_router(args, list(sample.tokens), params)
        apply_output(sample, output)
        if sample.status is Status.ABORTED:
            break
        action, content = parse_action(output.text)
        if action != "search":
            break
        observation = format_observation(default_search().search(content, TOP_K))
        ids = tokenizer.encode(observation, add_special_tokens=False)
        sample.append_response(ids, is_trainable=False, text=observation)
    return sample
