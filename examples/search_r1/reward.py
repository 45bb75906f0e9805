"""Search-R1's reward: exact match of the final `<answer>` with any golden answer (SQuAD normalization).

Use with `--custom-rm-path search_r1.reward:reward_func`. Only the model's last `<answer>...</answer>` counts;
answers found inside tool observations never do (they are not between answer tags). A response without an
answer scores 0.0. The label is the row's list of golden answers (or one string).
"""

from __future__ import annotations

import re
from typing import Any

from slime.sglang.rewards import exact_match
from slime.types import Sample

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_INFORMATION = re.compile(r"<information>.*?</information>", re.DOTALL)


def extract_answer(response: str) -> str | None:
    """The content of the last `<answer>` outside `<information>` blocks, or None."""
    found = _ANSWER.findall(_INFORMATION.sub("", response or ""))
    return found[-1].strip() if found else None


def compute_score(response: str, label: Any) -> float:
    """1.0 when the answer matches a golden answer, else 0.0."""
    answer = extract_answer(response)
    return 0.0 if answer is None else exact_match(answer, label)


async def reward_func(args: Any, sample: Sample, **kwargs: Any) -> float:
    """The `--custom-rm-path` entry."""
    return compute_score(sample.response, sample.label)
