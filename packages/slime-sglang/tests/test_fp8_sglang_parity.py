"""Our block FP8 against SGLang 0.5.17's own functions, compiled from its source (skipped when it is not found).

- `block_quant_dequant` (fp8_utils.py): how SGLang reads `weight` + `weight_scale_inv` back;
- `per_block_cast_to_fp8` with `ceil_to_ue8m0` (fp8_utils.py): SGLang's 128x128 quantizer with UE8M0 scales;
- `is_layer_skipped` (quantization/utils.py): which linears an FP8 config's ignore list leaves unquantized
  (its `_FALLBACK_FUSED_SHARDS` constant is copied: the loader compiles functions and plain assignments only).
"""

from __future__ import annotations

import importlib.util
import sys
import typing
from pathlib import Path
from types import MappingProxyType

import pytest
import torch

from slime.sync.block_fp8 import dequantize_block_fp8, quantize_block_fp8
from slime.sync.fp8_rollout import Fp8QuantPlan

HERE = Path(__file__).parent
if "real_sglang" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("real_sglang", HERE / "real_sglang.py")
    assert _spec is not None and _spec.loader is not None
    sys.modules["real_sglang"] = importlib.util.module_from_spec(_spec)  # the tests folder is no package
    _spec.loader.exec_module(sys.modules["real_sglang"])
real_sglang = sys.modules["real_sglang"]
SOURCE = real_sglang.find_source()
pytestmark = pytest.mark.skipif(SOURCE is None, reason="SGLang 0.5.17 source not found (see real_sglang.py)")


@pytest.fixture(scope="module")
def sglang_fp8() -> typing.Any:
    """SGLang's functions, in private module names (no `sglang.*` module is registered in this process)."""
    assert SOURCE is not None
    quant = SOURCE / "sglang" / "srt" / "layers" / "quantization"
    env = {
        "torch": torch, "List": list, "Tuple": tuple, "Mapping": typing.Mapping, "MappingProxyType": MappingProxyType,
        "ceil_align": lambda x, y: -(-x // y) * y, "ceil_div": lambda x, y: -(-x // y),
        # an annotated constant (the loader compiles functions and plain assignments only), copied from utils.py
        "_FALLBACK_FUSED_SHARDS": {"qkv_proj": ["q_proj", "k_proj", "v_proj"],
                                   "gate_up_proj": ["gate_proj", "up_proj"]},
    }  # fmt: skip
    fp8_names = {"block_quant_dequant", "per_block_cast_to_fp8", "ceil_to_ue8m0"}
    fp8 = real_sglang._module_from("_real_sglang_fp8_utils", quant / "fp8_utils.py", fp8_names, env)
    skip_names = {"_module_path_match", "is_layer_skipped"}
    skip = real_sglang._module_from("_real_sglang_quant_utils", quant / "utils.py", skip_names, env)
    return typing.cast(typing.Any, type("SGLang", (), {**fp8.__dict__, **skip.__dict__}))


@pytest.mark.parametrize(("shape", "block"), [((300, 200), (128, 128)), ((70, 33), (16, 8)), ((1, 1), (128, 128))])
def test_sglang_reads_back_what_we_dequantize(sglang_fp8, shape, block) -> None:
    w = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    q, scale = quantize_block_fp8(w, block)
    theirs = sglang_fp8.block_quant_dequant(q, scale, list(block), torch.float32)
    assert torch.equal(dequantize_block_fp8(q, scale, block), theirs)


def test_ue8m0_matches_sglangs_block_quantizer(sglang_fp8) -> None:
    g = torch.Generator().manual_seed(1)
    w = (torch.randn(300, 260, generator=g) * torch.logspace(-3, 3, 260)).to(torch.bfloat16)
    q, scale = quantize_block_fp8(w, scale_fmt="ue8m0")
    q_theirs, scale_theirs = sglang_fp8.per_block_cast_to_fp8(w)
    assert torch.equal(scale, scale_theirs)
    assert torch.equal(q.view(torch.uint8), q_theirs.view(torch.uint8))


@pytest.mark.parametrize(
    "ignored",
    [(), ("lm_head",), ("model.layers.0.mlp",), ("self_attn.o_proj", "layers.1.mlp.down_proj"), ("mlp.gate",)],
)
def test_ignored_layers_follow_sglangs_rule(sglang_fp8, ignored) -> None:
    plan = Fp8QuantPlan(ignored_layers=ignored)
    normalized = [
        v for layer in ignored for v in (layer.removeprefix("model."), f"model.{layer.removeprefix('model.')}")
    ]
    for layer in range(2):
        for module in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
            prefix = f"model.layers.{layer}.{module}"
            skipped = sglang_fp8.is_layer_skipped(prefix, normalized)
            assert plan.is_quantized(f"{prefix}.weight", (64, 64)) is not skipped, (prefix, ignored)
