"""Plugin seams: custom loss, advantage, TIS and pg-loss reducer, resolved by dotted path."""

from __future__ import annotations

import pytest
import torch

from slime.loss import LossConfig, compute_advantages, compute_loss, resolve_loss_plugins
from slime.types import ContractError

EXAMPLES = "slime_loss_reference.plugin_examples"


def _loss_inputs(**overrides):
    inputs = {
        "log_probs": torch.tensor([-1.0, -2.0, -0.5], requires_grad=True),
        "old_log_probs": torch.tensor([-1.0, -2.0, -0.5]),
        "advantages": torch.tensor([1.0, -1.0, 2.0]), "loss_mask": torch.tensor([1, 1, 1]),
        "cu_seqlens": torch.tensor([0, 2, 3]), "sample_denominators": torch.tensor([2.0, 1.0]),
        "num_global_tokens": 3.0, "num_global_samples": 2.0, "rollout_log_probs": torch.tensor([-1.0, -2.5, -0.5]),
    }  # fmt: skip
    return inputs | overrides


def test_custom_loss_gets_the_global_reducer_and_logits():
    config = LossConfig(loss_type="custom_loss", custom_loss_function_path=f"{EXAMPLES}:mean_log_prob_loss")
    loss, metrics = compute_loss(config, **_loss_inputs(), logits=torch.zeros(3, 4))
    torch.testing.assert_close(loss, torch.tensor(((1.0 + 2.0) / 2 + 0.5 / 1) / 2))
    assert float(metrics["had_logits"]) == 1.0 and not metrics["custom"].requires_grad


def test_custom_advantage_then_whitening():
    config = LossConfig(custom_advantage_function_path=f"{EXAMPLES}:constant_advantage")
    common = {"rewards": torch.tensor([1.0, 3.0]), "group_ids": torch.tensor([0, 0]),
              "cu_seqlens": torch.tensor([0, 1, 3]), "loss_mask": torch.ones(3)}  # fmt: skip
    advantages, returns = compute_advantages(config, **common)
    assert advantages.tolist() == [1.0, 3.0, 3.0] and returns.tolist() == [2.0, 6.0, 6.0]
    whitened, _ = compute_advantages(
        LossConfig(custom_advantage_function_path=config.custom_advantage_function_path, normalize_advantages=True),
        **common,
    )
    assert abs(float(whitened.mean())) < 1e-6
    with pytest.raises(ValueError, match="must set"):
        compute_advantages(LossConfig(custom_advantage_function_path=f"{EXAMPLES}:forgetful_advantage"), **common)


def test_custom_tis_replaces_the_builtin_and_keeps_denominators():
    path = f"{EXAMPLES}:halve_and_drop_first_token"
    config = LossConfig(custom_tis_function_path=path, calculate_per_token_loss=True)
    _, metrics = compute_loss(config, **_loss_inputs())
    _, plain = compute_loss(LossConfig(calculate_per_token_loss=True), **_loss_inputs())
    # ratio 1 everywhere: the pg loss is -A; token 0 is dropped, the rest halved, still divided by 3 tokens.
    torch.testing.assert_close(metrics["pg_loss"], torch.tensor((1.0 - 2.0) * 0.5 / 3))
    torch.testing.assert_close(plain["pg_loss"], torch.tensor((-1.0 + 1.0 - 2.0) / 3))
    torch.testing.assert_close(metrics["my_ratio"], torch.tensor((1.0 + torch.e**0.5 + 1.0) / 3))


def test_custom_pg_reducer_only_changes_pg_loss():
    path = f"{EXAMPLES}:constant_divisor_reducer"
    _, metrics = compute_loss(LossConfig(custom_pg_loss_reducer_function_path=path), **_loss_inputs())
    _, plain = compute_loss(LossConfig(), **_loss_inputs())
    torch.testing.assert_close(metrics["pg_loss"], torch.tensor((-1.0 + 1.0 - 2.0) / 4.0 / 2.0))
    torch.testing.assert_close(metrics["ppo_kl"], plain["ppo_kl"])


def test_resolution_errors_name_the_flag_and_signature():
    with pytest.raises(ContractError, match="--custom-loss-function-path"):
        resolve_loss_plugins(LossConfig(loss_type="custom_loss", custom_loss_function_path=f"{EXAMPLES}:wrong_arity"))
    with pytest.raises(ContractError, match="does not import"):
        resolve_loss_plugins(LossConfig(custom_tis_function_path="no_such_module_xyz:fn"))
    plugins = resolve_loss_plugins(LossConfig(custom_tis_function_path=f"{EXAMPLES}:halve_and_drop_first_token"))
    assert plugins.custom_tis is not None and plugins.custom_loss is None
