"""compute_loss / compute_value_loss against the float64 reference, and the reduction properties."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from slime_loss_reference import naive
from slime_loss_reference.batches import batches

from slime.loss import LossConfig, compute_loss, compute_value_loss

POLICY_ESTIMATORS = ["grpo", "gspo", "cispo", "ppo"]


@st.composite
def loss_configs(draw: st.DrawFn, estimators: list[str] = POLICY_ESTIMATORS) -> LossConfig:
    use_kl_loss = draw(st.booleans())
    return LossConfig(
        advantage_estimator=draw(st.sampled_from(estimators)),
        eps_clip=draw(st.sampled_from([0.2, 0.1])),
        eps_clip_high=draw(st.sampled_from([None, 0.28])),
        eps_clip_c=draw(st.sampled_from([None, 3.0])),
        calculate_per_token_loss=draw(st.booleans()),
        use_tis=draw(st.booleans()),
        tis_type=draw(st.sampled_from(["truncate", "icepop", "reject"])),
        tis_clip_low=draw(st.sampled_from([0.0, 0.5])),
        use_kl_loss=use_kl_loss,
        kl_loss_coef=draw(st.sampled_from([0.0, 0.05])) if use_kl_loss else 0.0,
        kl_loss_type=draw(st.sampled_from(["k1", "k2", "k3", "low_var_kl"])),
        use_unbiased_kl=draw(st.booleans()),
        entropy_coef=draw(st.sampled_from([0.0, 0.01])),
        use_opsm=draw(st.booleans()),
    )


def _entropy(batch) -> list[list[float]]:
    return [[0.1 + 0.37 * ((i + 3 * t) % 5) for t in range(len(m))] for i, m in enumerate(batch.masks)]


def _inputs(batch, entropy, extra_tokens: float = 0.0, extra_samples: float = 0.0) -> dict:
    mask = batch.packed("masks", torch.long)
    return {
        "log_probs": batch.packed("log_probs").requires_grad_(),
        "old_log_probs": batch.packed("old_log_probs"),
        "advantages": batch.packed("advantages"),
        "loss_mask": mask,
        "cu_seqlens": batch.cu_seqlens(),
        "sample_denominators": torch.tensor(batch.denominators(), dtype=torch.float64),
        "num_global_tokens": torch.tensor(float(mask.sum()) + extra_tokens, dtype=torch.float64),
        "num_global_samples": float(len(batch.masks)) + extra_samples,
        "ref_log_probs": batch.packed("ref_log_probs"),
        "rollout_log_probs": batch.packed("rollout_log_probs"),
        "entropy": torch.tensor([x for row in entropy for x in row], dtype=torch.float64),
    }


@given(batch=batches(), config=loss_configs(), extra=st.sampled_from([0.0, 5.0]))
def test_compute_loss_matches_reference(batch, config, extra):
    entropy = _entropy(batch)
    inputs = _inputs(batch, entropy, extra_tokens=3 * extra, extra_samples=extra)
    loss, metrics = compute_loss(config, **inputs)
    want = naive.loss(
        config, batch, entropy, batch.denominators(), float(inputs["num_global_tokens"]), inputs["num_global_samples"]
    )
    assert set(metrics) == set(want)
    for name, value in want.items():
        torch.testing.assert_close(metrics[name], torch.tensor(value, dtype=torch.float64), rtol=1e-7, atol=1e-9)
        assert not metrics[name].requires_grad
    torch.testing.assert_close(loss.detach(), metrics["loss"])


@settings(max_examples=15)
@given(batch=batches(max_groups=2, max_group_size=3, max_len=5), config=loss_configs(["grpo", "gspo", "ppo"]))
def test_gradient_matches_finite_differences_of_reference(batch, config):
    entropy = _entropy(batch)
    inputs = _inputs(batch, entropy)
    loss, _ = compute_loss(config, **inputs)
    (grad,) = torch.autograd.grad(loss, inputs["log_probs"]) if loss.requires_grad else (torch.zeros(0),)
    args = (entropy, batch.denominators(), float(inputs["num_global_tokens"]), inputs["num_global_samples"])
    h, flat = 1e-6, 0
    for i, row in enumerate(batch.log_probs):
        for t in range(len(row)):
            plus, minus = ([r[:] for r in batch.log_probs] for _ in range(2))
            plus[i][t] += h
            minus[i][t] -= h
            f_plus = naive.loss(config, dataclasses.replace(batch, log_probs=plus), *args)["loss"]
            f_minus = naive.loss(config, dataclasses.replace(batch, log_probs=minus), *args)["loss"]
            numeric = (f_plus - f_minus) / (2 * h)
            got = float(grad[flat]) if grad.numel() else 0.0
            assert abs(got - numeric) <= 1e-4 * max(1.0, abs(numeric)), (i, t, got, numeric)
            flat += 1


def test_cispo_gradient_flows_only_through_log_prob():
    log_probs = torch.tensor([-1.0, -2.0, -0.5], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([-3.0, -2.0, 1.0], dtype=torch.float64)  # ratios e^2 (clipped), 1, e^-1.5 (clipped)
    adv = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    config = LossConfig(advantage_estimator="cispo", calculate_per_token_loss=True, eps_clip_high=0.28)
    loss, _ = compute_loss(
        config, log_probs=log_probs, old_log_probs=old, advantages=adv, loss_mask=torch.ones(3),
        cu_seqlens=torch.tensor([0, 3]), sample_denominators=torch.tensor([3.0]), num_global_tokens=3.0,
        num_global_samples=1.0,
    )  # fmt: skip
    loss.backward()
    weights = torch.tensor([1.28, 1.0, 0.8], dtype=torch.float64)
    torch.testing.assert_close(log_probs.grad, -weights * adv / 3)


def _split(batch, cut: int):
    fields = [f.name for f in dataclasses.fields(batch) if f.name not in ("group_ids", "rewards")]
    first = dataclasses.replace(batch, **{f: getattr(batch, f)[:cut] for f in fields})
    second = dataclasses.replace(batch, **{f: getattr(batch, f)[cut:] for f in fields})
    return first, second


@given(batch=batches(), config=loss_configs(), data=st.data())
def test_micro_batches_with_global_denominators_sum_to_the_full_batch(batch, config, data):
    cut = data.draw(st.integers(0, len(batch.masks)))
    entropy = _entropy(batch)
    full = _inputs(batch, entropy)
    full_loss, full_metrics = compute_loss(config, **full)
    full_grad = torch.autograd.grad(full_loss, full["log_probs"])[0] if full_loss.requires_grad else None
    total, metric_sums, grads = 0.0, {}, []
    for part, part_entropy in zip(_split(batch, cut), (entropy[:cut], entropy[cut:]), strict=True):
        inputs = _inputs(part, part_entropy)
        inputs["num_global_tokens"] = full["num_global_tokens"]
        inputs["num_global_samples"] = full["num_global_samples"]
        loss, metrics = compute_loss(config, **inputs)
        total = total + loss
        for name, value in metrics.items():
            metric_sums[name] = metric_sums.get(name, 0.0) + value
        if loss.requires_grad:
            grads.append(torch.autograd.grad(loss, inputs["log_probs"])[0])
        else:
            grads.append(torch.zeros_like(inputs["log_probs"]))
    torch.testing.assert_close(torch.as_tensor(total).detach(), full_loss.detach(), rtol=1e-9, atol=1e-12)
    for name, value in full_metrics.items():
        torch.testing.assert_close(torch.as_tensor(metric_sums[name]), value, rtol=1e-9, atol=1e-12)
    if full_grad is not None:
        torch.testing.assert_close(torch.cat(grads), full_grad, rtol=1e-9, atol=1e-12)


@given(batch=batches(), config=loss_configs())
def test_masked_tokens_give_zero_loss_and_zero_gradient_whatever_their_values(batch, config):
    entropy = _entropy(batch)
    clean = _inputs(batch, entropy)
    dirty = {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in clean.items()}
    masked = clean["loss_mask"] == 0
    garbage = {"log_probs": -1e4, "old_log_probs": 50.0, "ref_log_probs": float("-inf"),
               "rollout_log_probs": -300.0, "advantages": 1e6, "entropy": 1e3}  # fmt: skip
    for name, value in garbage.items():
        dirty[name][masked] = value
    dirty["log_probs"].requires_grad_()
    clean_loss, clean_metrics = compute_loss(config, **clean)
    dirty_loss, dirty_metrics = compute_loss(config, **dirty)
    torch.testing.assert_close(dirty_loss, clean_loss, rtol=1e-9, atol=1e-12)
    for name in clean_metrics:
        torch.testing.assert_close(dirty_metrics[name], clean_metrics[name], rtol=1e-9, atol=1e-12)
    if dirty_loss.requires_grad:
        (grad,) = torch.autograd.grad(dirty_loss, dirty["log_probs"])
        assert torch.isfinite(grad).all()
        assert torch.equal(grad[masked], torch.zeros_like(grad[masked]))


def _single_token_grad(log_ratio: float, adv: float, config: LossConfig) -> float:
    log_probs = torch.tensor([log_ratio], dtype=torch.float64, requires_grad=True)
    loss, _ = compute_loss(
        config, log_probs=log_probs, old_log_probs=torch.zeros(1, dtype=torch.float64),
        advantages=torch.tensor([adv], dtype=torch.float64), loss_mask=torch.ones(1), cu_seqlens=torch.tensor([0, 1]),
        sample_denominators=torch.ones(1), num_global_tokens=1.0, num_global_samples=1.0,
    )  # fmt: skip
    return float(torch.autograd.grad(loss, log_probs)[0])


@given(
    log_ratio=st.floats(-3, 3).filter(lambda x: abs(x) > 1e-3),
    adv=st.floats(-2, 2).filter(lambda x: abs(x) > 1e-3),
    dual=st.booleans(),
    estimator=st.sampled_from(["grpo", "gspo"]),
)
def test_gradients_vanish_exactly_outside_the_clip_region(log_ratio, adv, dual, estimator):
    dual_c = 3.0 if dual else None
    config = LossConfig(advantage_estimator=estimator, eps_clip=0.2, eps_clip_high=0.28, eps_clip_c=dual_c)
    ratio = torch.tensor(log_ratio, dtype=torch.float64).exp().item()
    clipped = (adv > 0 and ratio > 1.28) or (adv < 0 and ratio < 0.8)
    dual_capped = dual and adv < 0 and ratio > 3.0
    grad = _single_token_grad(log_ratio, adv, config)
    if clipped or dual_capped:
        assert grad == 0.0
    else:
        assert grad == pytest.approx(-ratio * adv, rel=1e-9)


def test_metrics_of_sft_loss_and_zero_sized_micro_batch():
    config = LossConfig(loss_type="sft_loss")
    log_probs = torch.tensor([-1.0, -2.0, -4.0], requires_grad=True)
    loss, metrics = compute_loss(
        config, log_probs=log_probs, old_log_probs=torch.zeros(3), advantages=torch.zeros(3),
        loss_mask=torch.tensor([1, 1, 0]), cu_seqlens=torch.tensor([0, 1, 3]),
        sample_denominators=torch.tensor([1.0, 2.0]), num_global_tokens=2.0, num_global_samples=4.0,
    )  # fmt: skip
    torch.testing.assert_close(loss, torch.tensor((1.0 / 1 + 2.0 / 2) / 4))
    assert set(metrics) == {"loss"}
    empty, _ = compute_loss(
        LossConfig(), log_probs=torch.zeros(0, requires_grad=True), old_log_probs=torch.zeros(0),
        advantages=torch.zeros(0), loss_mask=torch.zeros(0), cu_seqlens=torch.zeros(1, dtype=torch.long),
        sample_denominators=torch.zeros(0), num_global_tokens=0.0, num_global_samples=0.0,
    )  # fmt: skip
    assert float(empty.detach()) == 0.0


def test_missing_inputs_are_named():
    common = {"log_probs": torch.zeros(2), "old_log_probs": torch.zeros(2), "advantages": torch.zeros(2),
              "loss_mask": torch.ones(2), "cu_seqlens": torch.tensor([0, 2]), "sample_denominators": torch.ones(1),
              "num_global_tokens": 2.0, "num_global_samples": 1.0}  # fmt: skip
    with pytest.raises(ValueError, match="rollout_log_probs"):
        compute_loss(LossConfig(use_tis=True), **common)
    with pytest.raises(ValueError, match="ref_log_probs"):
        compute_loss(LossConfig(use_kl_loss=True), **common)
    with pytest.raises(ValueError, match="entropy"):
        compute_loss(LossConfig(entropy_coef=0.01), **common)


@given(batch=batches(), per_token=st.booleans(), value_clip=st.sampled_from([0.2, 0.5]))
def test_value_loss_matches_reference_and_clipped_tokens_have_no_gradient(batch, per_token, value_clip):
    config = LossConfig(advantage_estimator="ppo", value_clip=value_clip, calculate_per_token_loss=per_token)
    values = batch.packed("values").requires_grad_()
    old_values, returns = batch.packed("advantages") / 2, batch.packed("old_log_probs") / 5
    mask = batch.packed("masks", torch.long)
    num_tokens, num_samples = float(mask.sum()), float(len(batch.masks))
    loss, metrics = compute_value_loss(
        config, values=values, old_values=old_values, returns=returns, loss_mask=mask, cu_seqlens=batch.cu_seqlens(),
        sample_denominators=torch.tensor(batch.denominators()), num_global_tokens=num_tokens,
        num_global_samples=num_samples,
    )  # fmt: skip
    rows = [len(m) for m in batch.masks]
    unpack = lambda x: [r.tolist() for r in torch.split(x.detach(), rows)]  # noqa: E731
    want = naive.value_loss(
        config, batch.values, unpack(old_values), unpack(returns), batch.masks, batch.denominators(), num_tokens,
        num_samples,
    )  # fmt: skip
    for name, value in want.items():
        torch.testing.assert_close(metrics[name], torch.tensor(value, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    if loss.requires_grad:
        (grad,) = torch.autograd.grad(loss, values)
        outside = (values - old_values).abs() > value_clip
        clipped_wins = (old_values + (values - old_values).clamp(-value_clip, value_clip) - returns) ** 2 > (
            values - returns
        ) ** 2
        assert torch.equal(grad[outside & clipped_wins], torch.zeros_like(grad[outside & clipped_wins]))


@settings(max_examples=25)
@given(batch=batches(extreme=False), config=loss_configs())
def test_float32_compute_loss_matches_float64_reference(batch, config):
    entropy = _entropy(batch)
    inputs = _inputs(batch, entropy)
    inputs = {k: v.detach().float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
              for k, v in inputs.items()}  # fmt: skip
    inputs["log_probs"].requires_grad_()
    _, metrics = compute_loss(config, **inputs)
    num_tokens, num_samples = float(inputs["num_global_tokens"]), inputs["num_global_samples"]
    want = naive.loss(config, batch, entropy, batch.denominators(), num_tokens, num_samples)
    for name, value in want.items():
        assert metrics[name].dtype == torch.float32
        torch.testing.assert_close(metrics[name], torch.tensor(value, dtype=torch.float32), rtol=1e-4, atol=1e-5)


def test_bf16_inputs_are_reduced_in_float32():
    gen = torch.Generator().manual_seed(0)
    num_tokens, lengths = 300, torch.tensor([100, 150, 50])
    cu = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    log_probs64 = -torch.rand(num_tokens, generator=gen, dtype=torch.float64) * 3
    old64 = log_probs64 + 0.1 * torch.randn(num_tokens, generator=gen, dtype=torch.float64)
    adv64 = torch.randn(num_tokens, generator=gen, dtype=torch.float64)
    common = {"loss_mask": torch.ones(num_tokens, dtype=torch.long), "cu_seqlens": cu, "num_global_samples": 3.0,
              "sample_denominators": lengths.double(), "num_global_tokens": 300.0}  # fmt: skip
    want, _ = compute_loss(LossConfig(), log_probs=log_probs64, old_log_probs=old64, advantages=adv64, **common)
    log_probs = log_probs64.bfloat16().requires_grad_()
    got, metrics = compute_loss(
        LossConfig(), log_probs=log_probs, old_log_probs=old64.bfloat16(), advantages=adv64.bfloat16(), **common
    )
    assert got.dtype == torch.float32 and metrics["pg_loss"].dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=0.05, atol=0.02)
    (grad,) = torch.autograd.grad(got, log_probs)
    assert grad.dtype == torch.bfloat16 and torch.isfinite(grad).all()
