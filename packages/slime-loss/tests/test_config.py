"""LossConfig: slime's defaults, and validation errors naming field, value and fix."""

from __future__ import annotations

import dataclasses

import pytest

from slime.loss import LossConfig
from slime.types import ConfigError


def test_defaults_are_slimes():
    config = LossConfig()
    assert config.advantage_estimator == "grpo"
    assert (config.eps_clip, config.eps_clip_high, config.eps_clip_c, config.clip_high) == (0.2, None, None, 0.2)
    assert (config.tis_clip, config.tis_clip_low, config.value_clip) == (2.0, 0.0, 0.2)
    assert (config.gamma, config.lambd, config.kl_coef, config.kl_loss_coef) == (1.0, 1.0, 0.0, 0.0)
    assert config.kl_loss_type == "k1" and config.loss_type == "policy_loss"
    assert not (config.use_kl_loss or config.use_tis or config.calculate_per_token_loss or config.normalize_advantages)
    assert LossConfig(eps_clip_high=0.28).clip_high == 0.28
    assert LossConfig(advantage_estimator="ppo").use_critic


def test_is_frozen_with_slots():
    config = LossConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.eps_clip = 0.1  # type: ignore[misc]  # the point of the test
    assert not hasattr(config, "__dict__")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"eps_clip_c": 1.0}, "eps_clip_c"),
        ({"eps_clip_c": 0.5}, "eps_clip_c"),
        ({"eps_clip": -0.1}, "eps_clip"),
        ({"eps_clip_high": -0.1}, "eps_clip_high"),
        ({"advantage_estimator": "reinforce_plus_plus"}, "normalize_advantages"),
        ({"advantage_estimator": "reinforce_plus_plus_baseline"}, "normalize_advantages"),
        ({"advantage_estimator": "a2c"}, "advantage_estimator"),
        ({"kl_loss_type": "k4"}, "kl_loss_type"),
        ({"loss_type": "value_loss"}, "loss_type"),
        ({"tis_type": "clip"}, "tis_type"),
        ({"kl_coef": 0.1, "kl_loss_coef": 0.1}, "kl_coef"),
        ({"use_tis": True, "use_rollout_logprobs": True}, "use_tis"),
        ({"gamma": 1.5}, "gamma"),
        ({"lambd": -0.1}, "lambd"),
        ({"value_clip": 0.0}, "value_clip"),
        ({"tis_clip_low": -1.0}, "tis_clip_low"),
        ({"tis_clip": 0.5, "tis_clip_low": 0.8}, "tis_clip"),
        ({"loss_type": "custom_loss"}, "custom_loss_function_path"),
    ],
)
def test_invalid_values_name_field_value_and_fix(kwargs, field):
    with pytest.raises(ConfigError) as info:
        LossConfig(**kwargs)
    message = str(info.value)
    assert f"`{field}`" in message
    assert "got" in message
    assert isinstance(info.value, ValueError)


def test_valid_combinations():
    LossConfig(advantage_estimator="reinforce_plus_plus", normalize_advantages=True, kl_coef=0.01)
    LossConfig(eps_clip_c=3.0, eps_clip_high=0.28)
    LossConfig(advantage_estimator="cispo", eps_clip=1.0, eps_clip_high=4.0)
    LossConfig(use_kl_loss=True, kl_loss_coef=0.01, kl_loss_type="low_var_kl")
