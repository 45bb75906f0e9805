"""The torch optimizers inside Megatron's optimizer wrappers: reaching them (`inner_optimizers`), and switching
Megatron's apex-less Adam / AdamW to torch's fused implementation (`use_fused_adam`, which changes how many kernels
a step takes, not what it computes).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def inner_optimizers(optimizer) -> Iterator[torch.optim.Optimizer]:
    """The torch optimizer of each of Megatron's (possibly chained) optimizers; nothing for None."""
    if optimizer is None:
        return
    for chained in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(chained, "optimizer", None)
        if inner is not None:
            yield inner


def use_fused_adam(optimizer) -> None:
    """Switch the torch Adam/AdamW inside Megatron's optimizer (its fallback without apex / TE) to torch's fused
    implementation: one kernel per parameter group and step instead of ~10 `foreach` passes over the fp32 state.
    On an H100 the foreach step of the 0.6B shape took 16 ms of kernels. Set before the first step, when the state
    (whose `step` counters the fused kernel keeps on the parameters' device) is created; torch moves loaded `step`
    counters where the group's `fused` flag wants them. Apex's / TE's fused optimizers are left as they are."""
    for inner in inner_optimizers(optimizer):
        if type(inner) not in (torch.optim.Adam, torch.optim.AdamW):
            continue
        devices = {p.device.type for group in inner.param_groups for p in group["params"]}
        if len(devices) != 1 or not devices <= {"cuda", "cpu"}:
            continue
        for group in [inner.defaults, *inner.param_groups]:
            group["fused"], group["foreach"] = True, False
        inner._step_supports_amp_scaling = True  # as torch's constructor sets it for fused=True
