"""Megatron's compiled SwiGLU / bias-dropout-add fusions (on for GPUs next to TE) give the eager step's update."""

from __future__ import annotations

import pytest
from slime_megatron_testsupport.results import max_abs_diff, ok

pytestmark = pytest.mark.slow


def test_fused_elementwise_step_equals_the_eager_step(fused_world: dict) -> None:
    assert ok(fused_world, "eager_config") == (False, False)
    assert ok(fused_world, "fused_config") == (True, True)  # the fused kernels really ran
    assert ok(fused_world, "eager_norms") == ["RMSNorm"] and ok(fused_world, "fused_norms") == ["CompiledRMSNorm"]
    eager, fused = ok(fused_world, "eager_step"), ok(fused_world, "fused_step")
    for key in ("train/loss", "train/pg_loss", "train/grad_norm"):
        assert fused[key] == pytest.approx(eager[key], rel=1e-5, abs=1e-7), key
    assert max_abs_diff(ok(fused_world, "fused_weights"), ok(fused_world, "eager_weights")) < 1e-5
