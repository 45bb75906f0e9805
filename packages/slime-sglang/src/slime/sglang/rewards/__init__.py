"""slime.sglang.rewards: the reward hub (`--rm-type`) and its graders.

`rm_hub_reward` / `batched_rm_hub_reward` score samples by type; `grade_math`, `grade_deepscaler`,
`grade_dapo`, `f1_score`, `grade_gpqa` are the pure graders; `post_reward` talks to a remote reward model.
"""

from __future__ import annotations

from slime.sglang.rewards.f1 import exact_match, f1_score, normalize_answer
from slime.sglang.rewards.gpqa import correct_letter, extract_choice, grade_gpqa
from slime.sglang.rewards.grading_pool import run_grader, shutdown_grading_pool
from slime.sglang.rewards.hub import RM_TYPES, batched_rm_hub_reward, check_rm_type, rm_hub_reward, sample_rm_type
from slime.sglang.rewards.math_answer import (
    dapo_prediction,
    extract_boxed,
    final_answer_part,
    grade_dapo,
    grade_deepscaler,
    grade_math,
    math_equal,
)
from slime.sglang.rewards.remote import RemoteRewardConfig, post_reward, reward_payload

__all__ = [
    "RM_TYPES",
    "RemoteRewardConfig",
    "batched_rm_hub_reward",
    "check_rm_type",
    "correct_letter",
    "dapo_prediction",
    "exact_match",
    "extract_boxed",
    "extract_choice",
    "f1_score",
    "final_answer_part",
    "grade_dapo",
    "grade_deepscaler",
    "grade_gpqa",
    "grade_math",
    "math_equal",
    "normalize_answer",
    "post_reward",
    "reward_payload",
    "rm_hub_reward",
    "run_grader",
    "sample_rm_type",
    "shutdown_grading_pool",
]
