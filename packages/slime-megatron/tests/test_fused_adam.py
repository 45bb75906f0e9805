"""slime.megatron.torch_optimizers.use_fused_adam: Megatron's torch Adam/AdamW fallback switched to torch's fused
kernel.

The Megatron worlds (test_megatron_training.py) train, checkpoint and reload with it on the CPU.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from slime.megatron.torch_optimizers import use_fused_adam


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(5, 3, generator=g)), torch.nn.Parameter(torch.randn(7, generator=g))]


def _steps(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        optimizer.step()


def test_megatrons_torch_adamw_becomes_fused_and_steps_alike() -> None:
    fused_params, plain_params = _params(0), _params(0)
    fused = torch.optim.AdamW(fused_params, lr=1e-2, weight_decay=0.1)
    plain = torch.optim.AdamW(plain_params, lr=1e-2, weight_decay=0.1, foreach=True)
    sgd = torch.optim.SGD(_params(1), lr=1.0)
    # Megatron's wrappers hold the torch optimizer as `.optimizer`; a ChainedOptimizer lists them
    use_fused_adam(
        SimpleNamespace(chained_optimizers=[SimpleNamespace(optimizer=fused), SimpleNamespace(optimizer=sgd)])
    )
    assert all(group["fused"] and not group["foreach"] for group in fused.param_groups)
    assert "fused" not in sgd.defaults or not sgd.defaults.get("fused")
    _steps(fused, fused_params, 2)
    _steps(plain, plain_params, 2)
    assert fused.state[fused_params[0]]["step"].device == fused_params[0].device  # the fused kernel's counter
    for ours, theirs in zip(fused_params, plain_params, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
