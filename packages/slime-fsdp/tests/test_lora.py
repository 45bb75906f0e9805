"""LoRA through peft: only adapter weights train, the reference is the adapter-free base model, and the
merged export (base names, no adapters) reproduces the LoRA model's log-probs in stock transformers."""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM

from slime.fsdp import FSDPConfig, FSDPPolicy
from slime.loss import LossConfig


def full_params(policy) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in policy.model.named_parameters():
        out[name] = (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
    return out


def test_lora_trains_only_adapters_and_merges(tiny_qwen3_dir, dist_ws1, make_batch, tmp_path):
    batch = make_batch(8, seed=30)
    config = FSDPConfig(
        hf_checkpoint=str(tiny_qwen3_dir), lora_rank=4, lora_alpha=8, target_modules="q_proj,v_proj,down_proj",
        lr=5e-2, num_steps_per_rollout=2, loss=LossConfig(use_kl_loss=True, kl_loss_coef=0.1),
        export_dtype="float32",
    )  # fmt: skip
    policy = FSDPPolicy(config, dist_ws1)
    base_ref = FSDPPolicy(FSDPConfig(hf_checkpoint=str(tiny_qwen3_dir)), dist_ws1).compute_log_probs(batch)
    before = full_params(policy)
    policy.train(0, batch)
    after = full_params(policy)

    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(".lora_" in n for n in changed)
    assert {n for n, p in policy.model.named_parameters() if p.requires_grad} == {n for n in before if ".lora_" in n}
    # The reference is the base model (adapters disabled), before and after training.
    for ref, base in zip(policy.compute_log_probs(batch, "ref"), base_ref, strict=True):
        torch.testing.assert_close(ref, base, atol=1e-6, rtol=0)

    lora_log_probs = policy.compute_log_probs(batch)
    assert any(not torch.allclose(a, b) for a, b in zip(lora_log_probs, base_ref, strict=True))
    out = policy.export_hf(tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out, attn_implementation="sdpa").eval()
    original = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    assert merged.state_dict().keys() == original.state_dict().keys()
    with torch.no_grad():
        for s, expected in zip(batch.samples, lora_log_probs, strict=True):
            logp = torch.log_softmax(merged(input_ids=torch.tensor([s.tokens])).logits[0], -1)
            got = logp[s.prompt_length - 1 : -1].gather(-1, torch.tensor(s.tokens[s.prompt_length :])[:, None])
            torch.testing.assert_close(got.squeeze(-1), expected, atol=2e-5, rtol=0)
