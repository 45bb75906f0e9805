"""On-policy distillation with an SGLang teacher: slime's `reward_func` and `post_process_rewards`.

slime's recipe (`--use-opd --opd-type sglang --custom-rm-path slime.rollout.on_policy_distillation.reward_func
--custom-reward-post-process-path slime.rollout.on_policy_distillation.post_process_rewards --rm-url
<teacher>/generate`) maps here. The "reward" of a sample is the teacher server's whole `/generate` answer for the
student's full `tokens` with `max_new_tokens=0, return_logprob, logprob_start_len=0`, i.e. the teacher's log-prob
of every input token. The post-process keeps the last `response_length` of `input_token_logprobs[1:]` as
`sample.teacher_log_probs` and returns scalar rewards 0 (the signal enters through the trainer's OPD advantage
term). It does not route between several teachers (slime's per-domain variant) and sends no images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from slime.sglang.rewards.remote import RemoteRewardConfig, post_reward
from slime.types import ConfigError, ContractError, Sample

TEACHER_ATTEMPTS = 4
"""Tries per sample (slime: 1 + OPD_RETRY_MAX=3); connection errors, 429 and 5xx are retried with backoff."""


def teacher_payload(sample: Sample) -> dict[str, Any]:
    """The `/generate` body slime sends the teacher: score the student's tokens, generate nothing."""
    return {
        "input_ids": list(sample.tokens),
        "sampling_params": {"temperature": 0, "max_new_tokens": 0, "skip_special_tokens": False},
        "return_logprob": True,
        "logprob_start_len": 0,
    }


def teacher_config(args: Any) -> RemoteRewardConfig:
    """Where the teacher is (`--rm-url`, its `/generate` endpoint) and how hard to try."""
    url = getattr(args, "rm_url", None)
    if not url:
        raise ConfigError(
            "on-policy distillation's reward_func needs --rm-url: the teacher's /generate endpoint, "
            "e.g. --rm-url http://127.0.0.1:30010/generate."
        )
    return RemoteRewardConfig(
        url=url,
        max_attempts=int(getattr(args, "rm_max_attempts", None) or TEACHER_ATTEMPTS),
        timeout_s=float(getattr(args, "rm_timeout_s", None) or 120.0),
        max_backoff_s=8.0,
    )


async def reward_func(
    args: Any, sample: Sample, *, session: aiohttp.ClientSession | None = None, **kwargs: Any
) -> dict[str, Any]:
    """slime's `on_policy_distillation.reward_func`: the teacher's `/generate` answer for `sample.tokens`.

    Raises:
        ConfigError: no `--rm-url`.
        EngineError: the teacher kept failing or refused the request.
    """
    answer = await post_reward(teacher_config(args), teacher_payload(sample), session=session)
    if not isinstance(answer, Mapping):
        raise ContractError(f"the OPD teacher at {args.rm_url} answered {type(answer).__name__}, not a JSON object.")
    return dict(answer)


def teacher_log_probs(answer: Any, sample: Sample) -> list[float]:
    """The teacher's log-probs of the sample's response tokens, from its `/generate` answer.

    Raises:
        ContractError: the answer has no `meta_info.input_token_logprobs`, or fewer than `response_length` + 1.
    """
    meta = answer.get("meta_info") if isinstance(answer, Mapping) else None
    entries = meta.get("input_token_logprobs") if isinstance(meta, Mapping) else None
    if not isinstance(entries, Sequence):
        raise ContractError(
            f"sample {sample.index}: its reward is not an SGLang /generate answer with "
            "meta_info.input_token_logprobs (got "
            f"{type(answer).__name__}). With the OPD post-process, --custom-rm-path must be "
            "slime.rollout.on_policy_distillation.reward_func and --reward-key must be unset."
        )
    values = [entry[0] for entry in entries[1:]]
    n = sample.response_length
    if len(values) < n or any(v is None for v in values[len(values) - n :]):
        raise ContractError(
            f"sample {sample.index}: the teacher scored {len(values)} input tokens after the first, fewer than "
            f"its {n} response tokens; the teacher must get the full tokens with logprob_start_len=0."
        )
    return [float(v) for v in values[len(values) - n :]] if n else []


def post_process_rewards(args: Any, samples: list[Sample], **kwargs: Any) -> tuple[list[float], list[float]]:
    """slime's `on_policy_distillation.post_process_rewards`: fill `teacher_log_probs`, rewards 0.

    Returns:
        `(raw_rewards, rewards)`, both `[0.0] * len(samples)` (pure distillation; add task rewards in your own
        post-process if you have them).
    """
    for sample in samples:
        sample.teacher_log_probs = teacher_log_probs(sample.reward, sample)
    zeros = [0.0] * len(samples)
    return zeros, list(zeros)
