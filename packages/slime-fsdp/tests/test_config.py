"""`FSDPConfig` validation: each error names the field, the value and the fix."""

from __future__ import annotations

import pytest

from slime.fsdp import FSDPConfig
from slime.loss import LossConfig
from slime.types import ConfigError

PPO = LossConfig(advantage_estimator="ppo")
OPD = LossConfig(use_opd=True)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"use_dynamic_batch_size": True}, "max_tokens_per_gpu"),
        ({"global_batch_size": 4, "num_steps_per_rollout": 2}, "global_batch_size"),
        ({"lr_decay_style": "cosine"}, "lr_decay_iters"),
        ({"lr_decay_style": "exp"}, "lr_decay_style"),
        ({"min_lr": 1.0, "lr": 0.1}, "min_lr"),
        ({"rollout_temperature": 0.0}, "rollout_temperature"),
        ({"micro_batch_size": 0}, "micro_batch_size"),
        ({"log_probs_chunk_size": 0}, "log_probs_chunk_size"),
        ({"device": "tpu"}, "device"),
        ({"lora_rank": -1}, "lora_rank"),
        ({"num_critic_only_steps": 1}, "num_critic_only_steps"),  # no critic without ppo
        ({"critic_lr": 1e-5}, "critic_lr"),
        ({"loss": PPO, "num_critic_only_steps": -1}, "num_critic_only_steps"),
        ({"loss": PPO, "lr_decay_style": "linear", "lr_decay_iters": 5, "critic_lr_warmup_iters": 5}, "critic_lr_warm"),
        ({"loss": OPD}, "opd_type"),
        ({"opd_type": "vllm"}, "opd_type"),
        ({"opd_teacher_load": "t"}, "opd_teacher_load"),  # without use_opd
        ({"loss": OPD, "opd_type": "megatron"}, "opd_teacher_load"),
        ({"loss": OPD, "opd_type": "sglang", "opd_teacher_load": "t"}, "opd_teacher_load"),
        ({"loss": OPD, "opd_type": "megatron", "opd_teacher_load": "t", "opd_teacher_ckpt_step": 3}, "ckpt_step"),
    ],
)
def test_invalid(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        FSDPConfig(hf_checkpoint="m", **kwargs)


def test_needs_ref():
    assert not FSDPConfig(hf_checkpoint="m").needs_ref
    assert FSDPConfig(hf_checkpoint="m", loss=LossConfig(use_kl_loss=True)).needs_ref
    rpp = LossConfig(advantage_estimator="reinforce_plus_plus", kl_coef=0.1, normalize_advantages=True)
    assert FSDPConfig(hf_checkpoint="m", loss=rpp).needs_ref
    assert not FSDPConfig(hf_checkpoint="m", loss=LossConfig(kl_coef=0.1)).needs_ref  # grpo ignores kl_coef


def test_critic_optimizer_flags():
    config = FSDPConfig(hf_checkpoint="m", loss=PPO, lr=1e-6, min_lr=1e-7, critic_lr=1e-8, critic_lr_warmup_iters=3)
    critic = config.critic_optimizer
    assert (critic.lr, critic.min_lr, critic.lr_warmup_iters) == (1e-8, 1e-8, 3)
    assert FSDPConfig(hf_checkpoint="m", loss=PPO, lr=2e-6).critic_optimizer.lr == 2e-6  # None: the actor's lr
