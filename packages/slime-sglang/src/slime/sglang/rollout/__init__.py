"""slime.sglang.rollout: the default rollout (generate, score, dynamic sampling, abort, partial rollout), eval, SFT.

Entry points: `generate_rollout` (the `--rollout-function-path` default; `RolloutFn`), `eval_rollout`,
`sft_rollout`, and `generate` (the default per-sample `GenerateFn`, which custom generate functions may
wrap; `call_router` / `apply_output` are its building blocks). `RolloutFunctions.from_args(args)` resolves
and checks every plugin path once at start-up. `apply_reward_post_process` is the orchestrator's
`--custom-reward-post-process-path` step after a rollout.
"""

from __future__ import annotations

from slime.sglang.rollout.chat_loss_mask import assistant_spans, chat_tokens_and_loss_mask
from slime.sglang.rollout.default_generate import apply_output, call_router, generate
from slime.sglang.rollout.default_rollout import eval_rollout, generate_rollout
from slime.sglang.rollout.eval_rollout import (
    EvalDatasetResult,
    EvalRolloutOutput,
    eval_before_train,
    eval_datasets,
    eval_due,
    eval_rollout_async,
)
from slime.sglang.rollout.functions import SLIME_PATH_ALIASES, RolloutFunctions
from slime.sglang.rollout.metrics import pass_at_k
from slime.sglang.rollout.prompt import prompt_token_ids
from slime.sglang.rollout.reward_post_process import apply_reward_post_process, load_reward_post_process
from slime.sglang.rollout.runtime import RolloutRuntime, load_tokenizer, run_on_rollout_loop, shutdown_rollout_runtimes
from slime.sglang.rollout.sampling import sampling_params_from_args
from slime.sglang.rollout.sft_rollout import sft_rollout, sft_sample
from slime.sglang.rollout.train_rollout import RolloutGroups, generate_rollout_async

__all__ = [
    "SLIME_PATH_ALIASES",
    "EvalDatasetResult",
    "EvalRolloutOutput",
    "RolloutFunctions",
    "RolloutGroups",
    "RolloutRuntime",
    "apply_output",
    "apply_reward_post_process",
    "assistant_spans",
    "call_router",
    "chat_tokens_and_loss_mask",
    "eval_before_train",
    "eval_datasets",
    "eval_due",
    "eval_rollout",
    "eval_rollout_async",
    "generate",
    "generate_rollout",
    "generate_rollout_async",
    "load_reward_post_process",
    "load_tokenizer",
    "pass_at_k",
    "prompt_token_ids",
    "run_on_rollout_loop",
    "sampling_params_from_args",
    "sft_rollout",
    "sft_sample",
    "shutdown_rollout_runtimes",
]
