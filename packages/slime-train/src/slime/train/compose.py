"""Compose the layers' typed configs from slime's flat `args`: the one place flags meet configs.

A layer config's field names are slime's flag names, so most fields copy straight across; the few
translations (store_false flags, list-valued flags) are written out here. Configs validate themselves.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

C = TypeVar("C")


def config_from_args(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """Build `cls` from the attributes of `args` named like its fields; `overrides` win."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass
    values = {name: getattr(args, name) for name in names if hasattr(args, name) and name not in overrides}
    return cls(**values, **overrides)


def loss_config(args: argparse.Namespace) -> Any:
    """`slime.loss.LossConfig` from slime's algorithm flags."""
    from slime.loss import LossConfig

    return config_from_args(
        LossConfig,
        args,
        disable_grpo_std_normalization=not args.grpo_std_normalization,
        disable_rewards_normalization=not args.rewards_normalization,
    )


def fsdp_config(args: argparse.Namespace) -> Any:
    """`slime.fsdp.FSDPConfig` (with its nested LossConfig)."""
    from slime.fsdp import FSDPConfig

    targets = ",".join(args.target_modules) if args.target_modules else "all-linear"
    return config_from_args(
        FSDPConfig,
        args,
        loss=loss_config(args),
        target_modules=targets,
        global_batch_size=None if args.num_steps_per_rollout else args.global_batch_size,
    )
