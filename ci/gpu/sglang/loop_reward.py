"""GPU recipe reward (issue #13): a dense reward a random-init model can improve on, so the loop's gradients are real.

The demo's reward is ~0 for a random model (it never writes the answer), which makes every advantage 0 and the
loss 0. This one scores a response by the fraction of its tokens with an even id: it varies inside a group from
the first rollout, and a policy that learns raises it. `--custom-rm-path ci.gpu.sglang.loop_reward:reward_func`
(the repo root is on `sys.path` when `train.py` runs).
"""

from __future__ import annotations

from typing import Any


async def reward_func(args: Any, sample: Any, **kwargs: Any) -> float:
    tokens = list(sample.tokens[len(sample.tokens) - sample.response_length :]) if sample.response_length else []
    return sum(1 for t in tokens if t % 2 == 0) / len(tokens) if tokens else 0.0
