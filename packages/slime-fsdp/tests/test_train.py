"""`train()` across estimators and options: every estimator of slime.loss runs, the engine's log-probs can
stand in for the old ones, static and dynamic batching agree, and offload/onload round-trips."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from slime.fsdp import FSDPConfig, FSDPPolicy
from slime.loss import LossConfig
from slime.types import ConfigError, ContractError

ESTIMATORS = {
    "grpo": LossConfig(),
    "dr_grpo": LossConfig(advantage_estimator="dr_grpo"),
    "gspo": LossConfig(advantage_estimator="gspo", eps_clip=3e-4, eps_clip_high=4e-4),
    "cispo": LossConfig(advantage_estimator="cispo", eps_clip=1.0, eps_clip_high=2.0),
    "rloo": LossConfig(advantage_estimator="rloo"),
    "rpp": LossConfig(advantage_estimator="reinforce_plus_plus", kl_coef=0.05, normalize_advantages=True, gamma=0.9),
    "rpp_baseline": LossConfig(
        advantage_estimator="reinforce_plus_plus_baseline", kl_coef=0.05, normalize_advantages=True
    ),
    "dual_clip_low_var_kl": LossConfig(eps_clip_c=3.0, use_kl_loss=True, kl_loss_coef=0.1, kl_loss_type="low_var_kl"),
    "sft": LossConfig(loss_type="sft_loss"),
    "ppo_kl_reward": LossConfig(advantage_estimator="ppo", kl_coef=0.05, gamma=0.9, lambd=0.95),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_estimators_train(name, tiny_qwen3_dir, dist_ws1, make_batch):
    config = FSDPConfig(
        hf_checkpoint=str(tiny_qwen3_dir), loss=ESTIMATORS[name], lr=1e-2, num_steps_per_rollout=2,
        use_dynamic_batch_size=True, max_tokens_per_gpu=32, export_dtype="float32",
    )  # fmt: skip
    policy = FSDPPolicy(config, dist_ws1)
    batch = make_batch(8, seed=50)
    before = dict(policy.export_weights())
    metrics = policy.train(0, batch)
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert metrics["train/num_steps"] == 2 and metrics["train/skipped_step"] == 0
    after = dict(policy.export_weights())
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_rollout_log_probs_as_old(tiny_qwen3_dir, dist_ws1, make_batch):
    batch = make_batch(8, seed=51)
    base = FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir), num_steps_per_rollout=2)
    logps = FSDPPolicy(base, dist_ws1).compute_log_probs(batch)
    samples = tuple(
        dataclasses.replace(s, rollout_log_probs=tuple((lp + 0.01).tolist()))
        for s, lp in zip(batch.samples, logps, strict=True)
    )
    with_rollout = dataclasses.replace(batch, samples=samples)
    config = dataclasses.replace(base, loss=LossConfig(use_rollout_logprobs=True))
    metrics = FSDPPolicy(config, dist_ws1).train(0, with_rollout)
    # First step of two: ratio exp(logp - (logp + 0.01)) = exp(-0.01) on every trainable token.
    assert metrics["train/train_rollout_logprob_abs_diff"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["train/ppo_kl"] > 0
    with pytest.raises(ContractError, match="rollout_log_probs"):
        FSDPPolicy(config, dist_ws1).train(0, batch)


def test_unsupported_combinations(tiny_qwen3_dir, dist_ws1):
    opd = {"loss": LossConfig(use_opd=True), "opd_type": "megatron", "opd_teacher_load": str(tiny_qwen3_dir)}
    with pytest.raises(ConfigError, match="LoRA"):
        FSDPPolicy(FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir), lora_rank=2, **opd))
    with pytest.raises(ConfigError, match="ref_load"):
        FSDPPolicy(FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir), lora_rank=2, ref_load="/elsewhere"))


def test_offload_onload(tiny_qwen3_dir, dist_ws1, make_batch):
    policy = FSDPPolicy(FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir), lr=1e-2), dist_ws1)
    batch = make_batch(4, seed=52)
    policy.train(0, batch)
    weights = dict(policy.export_weights())
    adam = [v for state in policy.optimizer.state.values() for v in state.values() if v.dim() > 0]
    assert adam
    policy.offload()
    assert policy.is_offloaded
    # the device bytes are gone (storages resized to 0), yet the very same parameter and Adam objects remain
    assert all(p.to_local().untyped_storage().nbytes() == 0 for p in policy.model.parameters())
    assert all(v.to_local().untyped_storage().nbytes() == 0 for v in adam)
    host = policy._offloader.host_bytes
    assert host >= sum(p.to_local().nelement() * 4 * 3 for p in policy.model.parameters())  # weights + 2 moments
    with pytest.raises(ContractError, match="onload"):
        policy.train(1, batch)
    policy.onload()
    assert not policy.is_offloaded
    assert all(torch.equal(t, weights[n]) for n, t in policy.export_weights())
    assert math.isfinite(policy.train(1, batch)["train/loss"])
    policy.offload()  # the next step reuses the host buffers
    assert policy._offloader.host_bytes == host
    policy.onload()
    assert math.isfinite(policy.train(2, batch)["train/loss"])
