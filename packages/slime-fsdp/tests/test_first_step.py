"""First-step invariants on tiny random Qwen3 and Llama: recomputed log-probs match the rollout's and the
reference's, and the KL and PPO ratio terms are exactly neutral before the first update."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM

from slime.fsdp import FSDPConfig, FSDPPolicy
from slime.loss import LossConfig
from slime.types import RolloutBatch

TEMPERATURE = 0.7


def unpacked_log_probs(model_dir: str, batch: RolloutBatch, temperature: float) -> list[torch.Tensor]:
    """Reference: stock transformers (sdpa), one sample at a time, no packing."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    out = []
    with torch.no_grad():
        for s in batch.samples:
            logits = model(input_ids=torch.tensor([s.tokens])).logits[0].float() / temperature
            logp = torch.log_softmax(logits[s.prompt_length - 1 : -1], dim=-1)
            out.append(logp.gather(-1, torch.tensor(s.tokens[s.prompt_length :]).unsqueeze(-1)).squeeze(-1))
    return out


def with_rollout_log_probs(batch: RolloutBatch, log_probs: list[torch.Tensor]) -> RolloutBatch:
    samples = tuple(
        dataclasses.replace(s, rollout_log_probs=tuple(lp.tolist()))
        for s, lp in zip(batch.samples, log_probs, strict=True)
    )
    return dataclasses.replace(batch, samples=samples)


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_first_step_invariants(family, request, dist_ws1, make_batch):
    model_dir = str(request.getfixturevalue(f"tiny_{family}_dir"))
    batch = make_batch(8, seed=1)
    rollout = unpacked_log_probs(model_dir, batch, TEMPERATURE)
    batch = with_rollout_log_probs(batch, rollout)
    loss = LossConfig(use_kl_loss=True, kl_loss_coef=0.1, kl_loss_type="k3", use_tis=True, entropy_coef=0.01)
    config = FSDPConfig(
        hf_checkpoint=model_dir, loss=loss, rollout_temperature=TEMPERATURE, lr=1e-3,
        use_dynamic_batch_size=True, max_tokens_per_gpu=24, num_steps_per_rollout=2,
    )  # fmt: skip
    policy = FSDPPolicy(config, dist_ws1)

    actor = policy.compute_log_probs(batch, "actor")
    ref = policy.compute_log_probs(batch, "ref")
    for a, r, roll, s in zip(actor, ref, rollout, batch.samples, strict=True):
        assert a.shape == (s.response_length,)
        assert torch.equal(a, r)  # same weights, same packed computation: bitwise
        torch.testing.assert_close(a, roll, atol=2e-5, rtol=0)  # packed vs unpacked sdpa: fp32 rounding only

    metrics = policy.train(0, batch)
    assert metrics["train/num_steps"] == 2
    # Step 0 sees the untouched policy: ratio 1 (no clipping, ppo_kl 0), KL to the reference exactly 0.
    first = policy_first_step_metrics(policy, batch, config)
    assert abs(first["kl_loss"]) < 1e-8
    assert abs(first["ppo_kl"]) < 1e-8
    assert first["pg_clipfrac"] == 0
    assert first["train_rollout_logprob_abs_diff"] < 2e-5
    assert abs(first["tis"] - 1) < 1e-4
    # Training moved the actor away from the reference.
    after = policy.compute_log_probs(batch, "actor")
    assert any(not torch.equal(a, b) for a, b in zip(actor, after, strict=True))
    assert all(torch.equal(r, r2) for r, r2 in zip(ref, policy.compute_log_probs(batch, "ref"), strict=True))


def policy_first_step_metrics(policy, batch, config) -> dict[str, float]:
    """The metrics of one step from the same starting point (a fresh policy: metrics of train() average steps)."""
    fresh = FSDPPolicy(dataclasses.replace(config, num_steps_per_rollout=None), policy.info)
    return {k.removeprefix("train/"): v for k, v in fresh.train(0, batch).items()}
