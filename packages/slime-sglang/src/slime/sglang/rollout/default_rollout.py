"""`generate_rollout`: the synchronous rollout entry the orchestrator calls (slime's `--rollout-function-path`).

`generate_rollout(args, rollout_id, data_buffer, evaluation=False)` fits `slime.types.RolloutFn`. It
resolves every plugin once (cached, so a bad path fails on the first call, i.e. at start-up when the
orchestrator calls `RolloutFunctions.from_args` itself), loads the tokenizer in the caller's thread, and runs
the async rollout on the persistent background loop of `runtime` (sessions reused across rollouts).
Training returns `RolloutGroups` (a `list[list[Sample]]` with `.metrics`); evaluation returns an
`EvalRolloutOutput`. Both async versions can be awaited directly on the rollout loop instead.
"""

from __future__ import annotations

from typing import Any

from slime.sglang.rollout.eval_rollout import EvalRolloutOutput, eval_rollout_async
from slime.sglang.rollout.functions import RolloutFunctions
from slime.sglang.rollout.runtime import RolloutRuntime, run_on_rollout_loop
from slime.sglang.rollout.train_rollout import RolloutGroups, check_rollout_args, generate_rollout_async


def _warm_up(args: Any) -> RolloutFunctions:
    functions = RolloutFunctions.from_args(args)
    if getattr(args, "hf_checkpoint", None):
        _ = RolloutRuntime.for_args(args).tokenizer  # blocking load here, not on the event loop
    return functions


def generate_rollout(
    args: Any, rollout_id: int, data_buffer: Any, evaluation: bool = False
) -> RolloutGroups | EvalRolloutOutput:
    """One training rollout (`rollout_batch_size` scored groups of n) or, with `evaluation`, one evaluation."""
    functions = _warm_up(args)
    if evaluation:
        return run_on_rollout_loop(eval_rollout_async(args, rollout_id, functions=functions))
    check_rollout_args(args)
    return run_on_rollout_loop(generate_rollout_async(args, rollout_id, data_buffer, functions=functions))


def eval_rollout(args: Any, rollout_id: int, data_buffer: Any = None) -> EvalRolloutOutput:
    """Evaluation only (what `generate_rollout(..., evaluation=True)` does); `data_buffer` is unused."""
    result = generate_rollout(args, rollout_id, data_buffer, evaluation=True)
    assert isinstance(result, EvalRolloutOutput)
    return result
