"""World size 1 vs 2 (two real processes, gloo on 127.0.0.1): the same updates (actor and PPO critic), the same
exported weights, and a checkpoint written by two ranks resumes in one (DCP reshards)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from slime.fsdp import FSDPConfig, FSDPPolicy
from slime.loss import LossConfig

PROBE = {"lr": 1e3, "adam_eps": 1e3, "weight_decay": 0.0, "clip_grad": 0.0, "export_dtype": "float32"}


@pytest.fixture(scope="module")
def scenarios(tiny_qwen3_dir, tmp_path_factory, make_batch):
    root = tmp_path_factory.mktemp("ws2")
    # 8 samples packed under a token budget, then 3 samples over 2 ranks (one rank runs an empty micro-batch).
    batches = [make_batch(8, seed=5), make_batch(3, seed=6, group_size=3, rollout_id=1)]
    full = FSDPConfig(
        hf_checkpoint=str(tiny_qwen3_dir), loss=LossConfig(use_kl_loss=True, kl_loss_coef=0.1, entropy_coef=0.01),
        use_dynamic_batch_size=True, max_tokens_per_gpu=20, lr_warmup_iters=3, save=str(root / "ckpt"), **PROBE,
    )  # fmt: skip
    lora = FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir), lora_rank=4, lora_alpha=8, micro_batch_size=1, **PROBE)
    # The value loss's gradients are large: critic_lr 10 (updates ~ 10 * grad / adam_eps) keeps its steps ~0.03.
    ppo = FSDPConfig(
        hf_checkpoint=str(tiny_qwen3_dir), loss=LossConfig(advantage_estimator="ppo", gamma=0.9, lambd=0.9),
        critic_lr=10.0, use_dynamic_batch_size=True, max_tokens_per_gpu=20, **PROBE,
    )  # fmt: skip
    return [{"config": c, "batches": batches} for c in (full, lora, ppo)]


@pytest.fixture(scope="module")
def ws2_results(scenarios, launch, tmp_path_factory):
    return launch(scenarios, tmp_path_factory.mktemp("ws2_out"))


def run_ws1(scenario, info):
    config = dataclasses.replace(scenario["config"], save=None)
    policy = FSDPPolicy(config, info)
    log_probs = policy.compute_log_probs(scenario["batches"][0])
    metrics = [dict(policy.train(i, b)) for i, b in enumerate(scenario["batches"])]
    return log_probs, metrics, dict(policy.export_weights())


def test_critic_world_size_1_and_2_agree(scenarios, ws2_results, dist_ws1):
    scenario, ws2 = scenarios[2], ws2_results[2]
    policy = FSDPPolicy(scenario["config"], dist_ws1)
    before = policy.critic.full_weights()
    for a, b in zip(policy.compute_values(scenario["batches"][0]), ws2["values"], strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
    metrics = [dict(policy.train(i, b)) for i, b in enumerate(scenario["batches"])]
    for m1, m2 in zip(metrics, ws2["metrics"], strict=True):
        for key in ("train/critic-value_loss", "train/critic-grad_norm", "train/pg_loss", "train/grad_norm"):
            assert m2[key] == pytest.approx(m1[key], rel=1e-5, abs=1e-7), key
    critic = policy.critic.full_weights()
    assert critic.keys() == ws2["critic_weights"].keys()
    assert not torch.equal(critic["value_head.weight"], before["value_head.weight"])
    for name, tensor in critic.items():
        torch.testing.assert_close(ws2["critic_weights"][name], tensor, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("which", [0, 1], ids=["full", "lora"])
def test_world_size_1_and_2_agree(which, scenarios, ws2_results, dist_ws1):
    ws2 = ws2_results[which]
    assert ws2["world_size"] == 2
    log_probs, metrics, weights = run_ws1(scenarios[which], dist_ws1)
    for a, b in zip(log_probs, ws2["log_probs"], strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
    for m1, m2 in zip(metrics, ws2["metrics"], strict=True):
        for key in ("train/loss", "train/pg_loss", "train/grad_norm", "train/lr"):
            assert m2[key] == pytest.approx(m1[key], rel=1e-5, abs=1e-7), key
    assert weights.keys() == ws2["weights"].keys()
    for name, tensor in weights.items():
        torch.testing.assert_close(ws2["weights"][name], tensor, atol=1e-5, rtol=1e-5, msg=name)


def test_checkpoint_from_two_ranks_resumes_on_one(scenarios, ws2_results, dist_ws1, tmp_path):
    config = dataclasses.replace(scenarios[0]["config"], load=ws2_results[0]["checkpoint"], save=None)
    policy = FSDPPolicy(config, dist_ws1)
    assert policy.start_rollout_id == 2
    assert policy.global_step == 2
    for name, tensor in policy.export_weights():
        assert torch.equal(tensor, ws2_results[0]["weights"][name]), name
