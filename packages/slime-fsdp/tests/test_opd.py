"""On-policy distillation in the FSDP trainer: a teacher swapped in from host memory (opd_type=megatron) or the
SGLang teacher's log-probs carried on the batch (opd_type=sglang); advantages shift by -coef * (old - teacher)."""

from __future__ import annotations

import dataclasses
import gc

import pytest
import torch
from slime_testkit.models import build_model
from transformers import AutoModelForCausalLM, PreTrainedModel

from slime.fsdp import FSDPConfig, FSDPPolicy
from slime.loss import LossConfig
from slime.types import ContractError

COEF = 0.7
TEMPERATURE = 0.8


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A second tiny Qwen3: the actor's architecture, other weights (seed 1)."""
    return build_model(tmp_path_factory.mktemp("teacher"), "qwen3", seed=1)


def opd_config(model_dir, **overrides) -> FSDPConfig:
    base = {
        "hf_checkpoint": str(model_dir), "loss": LossConfig(use_opd=True, opd_kl_coef=COEF), "lr": 1e-2,
        "rollout_temperature": TEMPERATURE, "use_dynamic_batch_size": True, "max_tokens_per_gpu": 24,
    }  # fmt: skip
    return FSDPConfig(**(base | overrides))


def base_advantages(model_dir, dist_ws1, batch) -> list[torch.Tensor]:
    """The same estimator without OPD."""
    config = FSDPConfig(hf_checkpoint=str(model_dir), rollout_temperature=TEMPERATURE)
    return FSDPPolicy(config, dist_ws1).prepare(batch).advantages


def unpacked_log_probs(model_dir, batch) -> list[torch.Tensor]:
    """Reference: stock transformers (sdpa), one sample at a time."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    out = []
    with torch.no_grad():
        for s in batch.samples:
            logits = model(input_ids=torch.tensor([s.tokens])).logits[0] / TEMPERATURE
            logp = torch.log_softmax(logits[s.prompt_length - 1 : -1], dim=-1)
            out.append(logp.gather(-1, torch.tensor(s.tokens[s.prompt_length :]).unsqueeze(-1)).squeeze(-1))
    return out


def test_teacher_equal_to_actor_adds_exactly_nothing(tiny_qwen3_dir, dist_ws1, make_batch):
    config = opd_config(tiny_qwen3_dir, opd_type="megatron", opd_teacher_load=str(tiny_qwen3_dir))
    policy = FSDPPolicy(config, dist_ws1)
    batch = make_batch(8, seed=30)
    data = policy.prepare(batch)
    assert all(torch.equal(t, o) for t, o in zip(data.teacher_log_probs, data.old_log_probs, strict=True))
    base = base_advantages(tiny_qwen3_dir, dist_ws1, batch)
    assert all(torch.equal(a, b) for a, b in zip(data.advantages, base, strict=True))
    assert policy.train(0, batch)["train/opd_reverse_kl"] == 0


def test_teacher_shifts_advantages_by_the_reverse_kl(tiny_qwen3_dir, teacher_dir, dist_ws1, make_batch):
    config = opd_config(tiny_qwen3_dir, opd_type="megatron", opd_teacher_load=str(teacher_dir))
    policy = FSDPPolicy(config, dist_ws1)
    batch = make_batch(8, seed=31)
    data = policy.prepare(batch)
    for got, ref in zip(data.teacher_log_probs, unpacked_log_probs(teacher_dir, batch), strict=True):
        torch.testing.assert_close(got, ref, atol=2e-5, rtol=0)  # the teacher's, not the actor's
    actor = policy.compute_log_probs(batch)  # the actor's weights are back after the teacher's pass
    assert all(torch.equal(a, o) for a, o in zip(actor, data.old_log_probs, strict=True))
    base = base_advantages(tiny_qwen3_dir, dist_ws1, batch)
    for adv, b, old, teacher in zip(data.advantages, base, data.old_log_probs, data.teacher_log_probs, strict=True):
        assert torch.equal(adv, b - COEF * (old - teacher))
        assert not torch.equal(adv, b)

    metrics = policy.train(0, batch)
    masks = [torch.tensor(s.loss_mask, dtype=torch.float64) for s in batch.samples]
    per_sample = [
        ((o.double() - t.double()) * m).sum() / m.sum().clamp_min(1)
        for o, t, m in zip(data.old_log_probs, data.teacher_log_probs, masks, strict=True)
    ]
    assert metrics["train/opd_reverse_kl"] == pytest.approx(float(sum(per_sample) / len(per_sample)), rel=1e-5)


def test_sglang_teacher_log_probs_come_from_the_batch(tiny_qwen3_dir, dist_ws1, make_batch):
    batch = make_batch(8, seed=32)
    policy = FSDPPolicy(opd_config(tiny_qwen3_dir, opd_type="sglang"), dist_ws1)
    with pytest.raises(ContractError, match="teacher_log_probs"):
        policy.prepare(batch)
    teacher = [torch.linspace(-3.0, -0.5, s.response_length) for s in batch.samples]
    samples = tuple(
        dataclasses.replace(s, teacher_log_probs=tuple(t.tolist())) for s, t in zip(batch.samples, teacher, strict=True)
    )
    scored = dataclasses.replace(batch, samples=samples)
    data = policy.prepare(scored)
    assert all(torch.equal(t, ref) for t, ref in zip(data.teacher_log_probs, teacher, strict=True))
    base = base_advantages(tiny_qwen3_dir, dist_ws1, scored)
    for adv, b, old, t in zip(data.advantages, base, data.old_log_probs, teacher, strict=True):
        assert torch.equal(adv, b - COEF * (old - t))
    assert "train/opd_reverse_kl" in policy.train(0, scored)


def _live_hf_models() -> int:
    gc.collect()
    return sum(issubclass(type(o), PreTrainedModel) for o in gc.get_objects())  # type(): no __class__ probing


def test_teacher_weights_live_in_host_memory_only(tiny_qwen3_dir, teacher_dir, dist_ws1, make_batch):
    before = _live_hf_models()
    policy = FSDPPolicy(opd_config(tiny_qwen3_dir, opd_type="megatron", opd_teacher_load=str(teacher_dir)), dist_ws1)
    own = sum(issubclass(type(m), PreTrainedModel) for m in policy.model.modules())  # the actor and its trunk
    assert _live_hf_models() == before + own  # the teacher's model was freed once its shards were cut
    backup = policy._backup  # the host store is the only teacher there is
    assert backup.tags == {"teacher"}
    assert all(t.device.type == "cpu" for t in backup.host_tensors("teacher").values())
    actor = {n: t.clone() for n, t in policy.export_weights()}
    policy.compute_log_probs(make_batch(4, seed=33), "teacher")
    assert backup.tags == {"teacher"}  # the actor's temporary host copy is dropped after the swap back
    assert all(torch.equal(t, actor[n]) for n, t in policy.export_weights())
