"""PPO with the FSDP critic on tiny random models: values before advantages, GAE against slime.loss's float64 serial
reference, both networks updated, the value clip, critic-only warm-up rollouts, checkpoints, offload."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModel

from slime.fsdp import FSDPConfig, FSDPPolicy
from slime.loss import LossConfig, gae_serial
from slime.types import ContractError

PPO = LossConfig(advantage_estimator="ppo", gamma=0.9, lambd=0.8)


def ppo_config(model_dir, **overrides) -> FSDPConfig:
    base = {
        "hf_checkpoint": str(model_dir), "loss": PPO, "lr": 1e-2, "critic_lr": 2e-2, "use_dynamic_batch_size": True,
        "max_tokens_per_gpu": 24, "export_dtype": "float32",
    }  # fmt: skip
    return FSDPConfig(**(base | overrides))


def unpacked_values(model_dir: str, head: torch.Tensor, batch) -> list[torch.Tensor]:
    """Reference: stock transformers trunk (sdpa), one sample at a time, times the critic's value head [1, H]."""
    trunk = AutoModel.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    out = []
    with torch.no_grad():
        for s in batch.samples:
            hidden = trunk(input_ids=torch.tensor([s.tokens])).last_hidden_state[0]
            out.append((hidden[s.prompt_length - 1 : -1] @ head.T).squeeze(-1))
    return out


def gae_reference(batch, values: list[torch.Tensor], gamma: float, lambd: float) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 GAE of slime.loss's serial scan: token rewards are 0 but the sample's reward on its last token."""
    rewards = [torch.zeros(s.response_length, dtype=torch.float64) for s in batch.samples]
    for r, s in zip(rewards, batch.samples, strict=True):
        r[-1] = s.reward
    lengths = torch.tensor([s.response_length for s in batch.samples])
    cu = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    return gae_serial(torch.cat(rewards), torch.cat(values).double(), cu, gamma, lambd)


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_ppo_first_step(family, request, dist_ws1, make_batch):
    model_dir = str(request.getfixturevalue(f"tiny_{family}_dir"))
    policy = FSDPPolicy(ppo_config(model_dir), dist_ws1)
    batch = make_batch(8, seed=20)
    critic_before = policy.critic.full_weights()
    actor_before = dict(policy.export_weights())

    data = policy.prepare(batch)
    expected_values = unpacked_values(model_dir, critic_before["value_head.weight"], batch)
    for v, ref, s in zip(data.values, expected_values, batch.samples, strict=True):
        assert v.shape == (s.response_length,)
        torch.testing.assert_close(v, ref, atol=2e-5, rtol=0)  # packed vs unpacked: fp32 rounding only
    advantages, returns = gae_reference(batch, data.values, PPO.gamma, PPO.lambd)
    torch.testing.assert_close(torch.cat(data.advantages).double(), advantages, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(data.returns).double(), returns, atol=1e-5, rtol=1e-5)

    metrics = policy.train(0, batch)
    # One step: the critic's values are still the old ones, so nothing is clipped and the loss is mean (V - R)^2.
    masks = [torch.tensor(s.loss_mask, dtype=torch.float64) for s in batch.samples]
    per_sample = [
        ((v.double() - r.double()) ** 2 * m).sum() / m.sum().clamp_min(1)
        for v, r, m in zip(data.values, data.returns, masks, strict=True)
    ]
    assert metrics["train/critic-value_loss"] == pytest.approx(float(sum(per_sample) / len(per_sample)), rel=1e-5)
    assert metrics["train/critic-value_clipfrac"] == 0
    assert metrics["train/critic-lr"] == 2e-2 and metrics["train/lr"] == 1e-2
    assert "train/pg_loss" in metrics
    critic_after = policy.critic.full_weights()
    assert not torch.equal(critic_after["value_head.weight"], critic_before["value_head.weight"])
    assert any(not torch.equal(critic_after[n], critic_before[n]) for n in critic_before if n.startswith("model."))
    assert any(not torch.equal(t, actor_before[n]) for n, t in policy.export_weights())


def test_value_clip(tiny_qwen3_dir, dist_ws1, make_batch):
    batch = make_batch(8, seed=21)

    def clipfrac(value_clip: float) -> tuple[float, float]:
        loss = dataclasses.replace(PPO, value_clip=value_clip)
        config = ppo_config(tiny_qwen3_dir, loss=loss, critic_lr=5e-2, num_steps_per_rollout=2)
        metrics = FSDPPolicy(config, dist_ws1).train(0, batch)
        return metrics["train/critic-value_clipfrac"], metrics["train/critic-value_loss"]

    # Step 2 sees values moved by step 1's update: a tight clip binds on some tokens, a loose one never does.
    tight, loose = clipfrac(1e-4), clipfrac(1e3)
    assert tight[0] > 0
    assert loose[0] == 0
    assert tight[1] >= loose[1]  # the clipped objective takes the max of the two squared errors


def test_critic_only_steps_leave_the_actor_unchanged(tiny_qwen3_dir, dist_ws1, make_batch):
    policy = FSDPPolicy(ppo_config(tiny_qwen3_dir, num_critic_only_steps=1, num_steps_per_rollout=2), dist_ws1)
    batch = make_batch(8, seed=22)
    actor_before = dict(policy.export_weights())
    critic_before = policy.critic.full_weights()

    metrics = policy.train(0, batch)
    assert "train/pg_loss" not in metrics and "train/lr" not in metrics
    assert metrics["train/critic-value_loss"] > 0 and metrics["train/num_steps"] == 2
    assert all(torch.equal(t, actor_before[n]) for n, t in policy.export_weights())
    assert not policy.optimizer.state and policy.global_step == 0  # AdamW never stepped
    critic_after = policy.critic.full_weights()
    assert any(not torch.equal(critic_after[n], critic_before[n]) for n in critic_before)

    metrics = policy.train(1, make_batch(8, seed=23, rollout_id=1))
    assert "train/pg_loss" in metrics and policy.global_step == 2
    assert any(not torch.equal(t, actor_before[n]) for n, t in policy.export_weights())


def test_ppo_checkpoint_round_trip_is_bit_exact(tiny_qwen3_dir, dist_ws1, make_batch, tmp_path):
    config = ppo_config(
        tiny_qwen3_dir, save=str(tmp_path / "ckpt"), num_steps_per_rollout=2, lr_warmup_iters=1, lr_decay_iters=6,
        lr_decay_style="cosine", min_lr=1e-3, critic_lr_warmup_iters=3,
    )  # fmt: skip
    b0, b1 = make_batch(8, seed=24), make_batch(8, seed=25, rollout_id=1)
    first = FSDPPolicy(config, dist_ws1)
    first.train(0, b0)
    first.save_checkpoint(0)
    expected = dict(first.train(1, b1))
    expected_actor, expected_critic = dict(first.export_weights()), first.critic.full_weights()

    resumed = FSDPPolicy(dataclasses.replace(config, load=config.save), dist_ws1)
    assert (resumed.start_rollout_id, resumed.global_step) == (1, 2)
    got = dict(resumed.train(1, b1))
    for key in ("train/loss", "train/grad_norm", "train/lr", "train/critic-value_loss", "train/critic-lr"):
        assert got[key] == expected[key], key
    assert all(torch.equal(t, expected_actor[n]) for n, t in resumed.export_weights())
    critic = resumed.critic.full_weights()
    assert all(torch.equal(critic[n], expected_critic[n]) for n in expected_critic)


def test_checkpoint_without_critic_keeps_the_fresh_critic(tiny_qwen3_dir, dist_ws1, make_batch, tmp_path):
    grpo = FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir), save=str(tmp_path / "grpo"), lr=1e-2)
    actor = FSDPPolicy(grpo, dist_ws1)
    actor.train(0, make_batch(4, seed=26))
    actor.save_checkpoint(0)
    fresh = FSDPPolicy(ppo_config(tiny_qwen3_dir), dist_ws1).critic.full_weights()
    resumed = FSDPPolicy(ppo_config(tiny_qwen3_dir, load=grpo.save), dist_ws1)
    assert resumed.start_rollout_id == 1
    assert all(torch.equal(t, fresh[n]) for n, t in resumed.critic.full_weights().items())


def test_ppo_offload_onload(tiny_qwen3_dir, dist_ws1, make_batch):
    policy = FSDPPolicy(ppo_config(tiny_qwen3_dir), dist_ws1)
    batch = make_batch(4, seed=27)
    policy.train(0, batch)
    critic = policy.critic.full_weights()
    policy.offload()
    assert policy.critic.offloader.is_offloaded
    assert all(p.to_local().untyped_storage().nbytes() == 0 for p in policy.critic.model.parameters())
    with pytest.raises(ContractError, match="onload"):
        policy.compute_values(batch)
    policy.onload()
    assert not policy.critic.offloader.is_offloaded
    assert all(torch.equal(t, critic[n]) for n, t in policy.critic.full_weights().items())
    assert policy.train(1, batch)["train/critic-value_loss"] > 0
