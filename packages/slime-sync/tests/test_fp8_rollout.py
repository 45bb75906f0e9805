"""FP8 rollout plan: read from config.json, which tensors are quantized, and the stream the engine receives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slime.sync.block_fp8 import FP8_DTYPE, dequantize_block_fp8
from slime.sync.fp8_rollout import Fp8Dequantizer, Fp8QuantPlan, quantize_for_fp8_engine
from slime.types import ConfigError, WeightSyncError

QWEN3_FP8 = {
    "quant_method": "fp8",
    "fmt": "e4m3",
    "activation_scheme": "dynamic",
    "weight_block_size": [128, 128],
}
"""The quantization_config of Qwen/Qwen3-4B-FP8."""
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")  # fmt: skip


def _qwen3_state(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_plan_from_config() -> None:
    plan = Fp8QuantPlan.from_hf_config({"quantization_config": {**QWEN3_FP8, "modules_to_not_convert": ["lm_head"]}})
    assert plan == Fp8QuantPlan(block_size=(128, 128), ignored_layers=("lm_head",))
    assert plan.quantization_config() == {**QWEN3_FP8, "ignored_layers": ["lm_head"]}
    assert Fp8QuantPlan.from_hf_config({"model_type": "qwen3"}) is None
    assert Fp8QuantPlan.from_hf_config({"quantization_config": {"quant_method": "compressed-tensors"}}) is None
    nested = Fp8QuantPlan.from_hf_config({"text_config": {"quantization_config": QWEN3_FP8}})
    assert nested is not None and nested.block_size == (128, 128)


def test_plan_from_folder(tmp_path: Path) -> None:
    assert Fp8QuantPlan.from_hf_folder(tmp_path) is None  # no config.json (a hub name)
    (tmp_path / "config.json").write_text(
        json.dumps({"quantization_config": {**QWEN3_FP8, "weight_block_size": [64, 32]}})
    )
    assert Fp8QuantPlan.from_hf_folder(tmp_path) == Fp8QuantPlan(block_size=(64, 32))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weight_block_size": None}, "weight_block_size.*per-tensor"),
        ({"fmt": "e5m2"}, "`fmt` is 'e5m2'"),
        ({"activation_scheme": "static"}, "`activation_scheme` is 'static'"),
        ({"weight_block_size": [128]}, r"`weight_block_size` is \[128\]"),
        ({"scale_fmt": "e8"}, "`scale_fmt` is 'e8'"),
    ],
)
def test_refuses_fp8_configs_it_cannot_reproduce(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Fp8QuantPlan.from_hf_config({"quantization_config": {**QWEN3_FP8, **change}})


def test_selects_the_decoder_linears_of_tiny_qwen3(tiny_qwen3_dir: Path) -> None:
    state = _qwen3_state(tiny_qwen3_dir)
    plan = Fp8QuantPlan()
    chosen = {name for name, t in state.items() if plan.is_quantized(name, t.shape)}
    layers = json.loads((tiny_qwen3_dir / "config.json").read_text())["num_hidden_layers"]
    assert chosen == {f"model.layers.{i}.{m}.weight" for i in range(layers) for m in LINEARS}
    assert not any(n in chosen for n in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"))


def test_router_norms_and_ignored_modules_stay_unquantized() -> None:
    plan = Fp8QuantPlan(ignored_layers=("model.layers.0.mlp", "self_attn.o_proj"))
    assert not plan.is_quantized("model.layers.3.mlp.gate.weight", (8, 64))
    assert not plan.is_quantized("model.layers.3.mlp.shared_expert_gate.weight", (1, 64))
    assert not plan.is_quantized("model.layers.3.self_attn.q_norm.weight", (16,))
    assert not plan.is_quantized("model.layers.0.mlp.experts.1.down_proj.weight", (64, 32))
    assert not plan.is_quantized("model.layers.5.self_attn.o_proj.weight", (64, 64))
    assert plan.is_quantized("model.layers.1.mlp.experts.1.down_proj.weight", (64, 32))
    assert plan.is_quantized("model.layers.10.mlp.gate_up_proj.weight", (64, 32))  # `mlp.gate` is not a prefix
    assert plan.is_quantized("model.layers.0.self_attn.q_proj.weight", (64, 64))  # "layers.0.mlp" only


def test_quantize_for_fp8_engine_on_tiny_qwen3(tiny_qwen3_dir: Path) -> None:
    state = _qwen3_state(tiny_qwen3_dir)
    plan = Fp8QuantPlan(block_size=(16, 32))
    out = list(quantize_for_fp8_engine(state.items(), plan))
    assert len({n for n, _ in out}) == len(out)
    got = dict(out)
    quantized = [n for n, t in state.items() if plan.is_quantized(n, t.shape)]
    assert set(got) == set(state) | {f"{n}_scale_inv" for n in quantized}
    for name, tensor in state.items():
        if name not in quantized:
            assert got[name] is tensor
            continue
        q, scale = got[name], got[f"{name}_scale_inv"]
        assert q.dtype == FP8_DTYPE and scale.dtype == torch.float32
        assert scale.shape == (-(-tensor.shape[0] // 16), -(-tensor.shape[1] // 32))
        deq = dequantize_block_fp8(q, scale, plan.block_size)
        assert bool(((deq - tensor).abs() <= 2.0**-4 * tensor.abs() + 2.0**-10 * scale.max() + 1e-9).all())
        assert not torch.equal(deq, tensor)  # it really went through FP8


def test_quantization_is_lazy() -> None:
    def tensors():
        yield "model.layers.0.mlp.up_proj.weight", torch.ones(4, 4)
        raise AssertionError("read past the first weight")

    stream = quantize_for_fp8_engine(tensors(), Fp8QuantPlan(block_size=(2, 2)))
    assert [n for n, _ in (next(stream), next(stream))] == [
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.mlp.up_proj.weight_scale_inv",
    ]


def test_dequantizer_pairs_halves_across_calls_and_reports_orphans() -> None:
    plan = Fp8QuantPlan(block_size=(2, 2))
    w = torch.tensor([[1.0, -3.0, 0.5], [0.0, 2.0, 7.0]])
    (wn, q), (sn, scale) = quantize_for_fp8_engine([("model.layers.0.self_attn.o_proj.weight", w)], plan)
    norm = ("model.norm.weight", torch.ones(3))
    deq = Fp8Dequantizer(plan.block_size)
    assert deq.dequantize([(sn, scale), norm]) == [norm]  # the scale waits for its weight
    assert list(deq.pending) == [sn]
    ((name, got),) = deq.dequantize([(wn, q)])
    assert name == wn and got.dtype == torch.float32
    assert torch.equal(got, dequantize_block_fp8(q, scale, plan.block_size))
    assert deq.pending == {}
    deq.check_complete("payload")
    deq.dequantize([(wn, q)])  # a weight without its scale
    with pytest.raises(WeightSyncError, match=r"payload holds .* without their partner \(model.layers.0.self_attn"):
        deq.check_complete("payload")
