"""The demo's toy task: "write digits:" (optionally also "write letters:"); the reward is the fraction of
the first `ANSWER_LEN` response characters that belong to the requested class.

A random model emits the right class only by chance (about 10 % of characters for digits), so the reward
starts low but non-zero and GRPO has a signal from the first step. This module writes the prompt file and
scores responses; it knows nothing of engines or trainers.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

CLASSES = {"digits": string.digits, "letters": string.ascii_lowercase}
ANSWER_LEN = 8


def make_prompts(path: str | Path, num_prompts: int = 256, seed: int = 0, kinds: tuple[str, ...] = ("digits",)) -> Path:
    """Write `num_prompts` jsonl rows `{"input", "label", "metadata"}`; deterministic in `seed`.

    The default asks for digits only, which a 2-layer model learns in a few dozen rollouts on 2 cores;
    `kinds=("digits", "letters")` makes it read the prompt, which takes several times longer.
    """
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i in range(num_prompts):
            kind = rng.choice(sorted(kinds))
            row = {"input": f"write {kind}:", "label": kind, "metadata": {"id": i}}
            f.write(json.dumps(row) + "\n")
    return path


def score(response: str, label: str) -> float:
    """Fraction of the first `ANSWER_LEN` response characters in the label's class (short answers lose)."""
    allowed = CLASSES[label]
    head = response[:ANSWER_LEN]
    return sum(ch in allowed for ch in head) / ANSWER_LEN


async def reward_func(args: Any, sample: Any, **kwargs: Any) -> float:
    """slime custom-rm signature (`--custom-rm-path slime.train.demo.task:reward_func`)."""
    return score(sample.response, sample.label)
