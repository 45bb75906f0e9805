"""The CPU engine serves a block-FP8 checkpoint: FP8 pairs dequantized on load and on weight updates.

End to end: trainer-side bf16 weights, quantized by `quantize_for_fp8_engine` and sent through a slime.sync
transport, must be exactly what the engine holds after dequantization.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from slime.sglang.local_server.model_runner import ModelRunner
from slime.sync import SharedMemoryReceiver, SharedMemorySender
from slime.sync.block_fp8 import dequantize_block_fp8, quantize_block_fp8
from slime.sync.fp8_rollout import Fp8QuantPlan, quantize_for_fp8_engine
from slime.types import WeightSyncError

PLAN = Fp8QuantPlan(block_size=(32, 32))


def _write_fp8(origin: Path, out: Path, *, drop: str | None = None) -> Path:
    """The FP8 folder of `origin` (what `slime-convert hf-to-fp8` writes), optionally without tensor `drop`."""
    out.mkdir()
    for asset in origin.iterdir():
        if asset.suffix != ".safetensors" and asset.name != "config.json":
            shutil.copy2(asset, out / asset.name)
    config = json.loads((origin / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(config | {"quantization_config": PLAN.quantization_config()}))
    state = load_file(str(origin / "model.safetensors"))
    tensors = {n: t for n, t in quantize_for_fp8_engine(state.items(), PLAN) if n != drop}
    save_file(tensors, str(out / "model.safetensors"))
    return out


@pytest.fixture(scope="module")
def fp8_dir(tiny_qwen3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_fp8(tiny_qwen3_dir, tmp_path_factory.mktemp("fp8") / "Qwen3-FP8")


def _expected(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """What an FP8 engine holds for a trainer weight: the dequantized FP8 copy, or the weight itself."""
    if not PLAN.is_quantized(name, tensor.shape):
        return tensor.float()
    return dequantize_block_fp8(*quantize_block_fp8(tensor, PLAN.block_size), PLAN.block_size)


def test_loads_an_fp8_checkpoint_into_a_float_model(fp8_dir: Path, tiny_qwen3_dir: Path) -> None:
    runner = ModelRunner(str(fp8_dir))
    assert runner.fp8 is not None and runner.fp8.pending == {}
    held = runner.model.state_dict()
    origin = load_file(str(tiny_qwen3_dir / "model.safetensors"))
    assert set(held) == set(origin)
    num_quantized = 0
    for name, tensor in origin.items():
        assert held[name].dtype == torch.float32
        assert torch.equal(held[name], _expected(name, tensor)), name
        num_quantized += PLAN.is_quantized(name, tensor.shape)
    assert num_quantized == 14  # 7 linears x 2 layers
    batch, logits = runner.prefill([[5, 9, 13, 40]])
    _, bf16_logits = ModelRunner(str(tiny_qwen3_dir)).prefill([[5, 9, 13, 40]])
    assert not torch.equal(logits, bf16_logits)
    torch.testing.assert_close(logits, bf16_logits, atol=0.1, rtol=0.1)


def test_trainer_bf16_weights_quantized_and_sent_equal_what_the_engine_holds(fp8_dir: Path) -> None:
    runner = ModelRunner(str(fp8_dir))
    g = torch.Generator().manual_seed(3)
    trainer = {
        name: (param.detach() + torch.randn(param.shape, generator=g) * 0.05).to(torch.bfloat16)
        for name, param in runner.model.state_dict().items()
    }
    receiver = SharedMemoryReceiver(runner.load_weights)
    # small buckets and parts: FP8 weights and their float32 scales travel in different buckets and parts
    sender = SharedMemorySender(lambda p: receiver.apply(p), bucket_bytes=4096, max_payload_bytes=8192)
    try:
        sender.publish(list(quantize_for_fp8_engine(trainer.items(), PLAN)), version=1)
    finally:
        sender.close()
    assert receiver.version == 1 and runner.fp8 is not None and runner.fp8.pending == {}
    held = runner.model.state_dict()
    for name, tensor in trainer.items():
        assert torch.equal(held[name], _expected(name, tensor)), name


def test_refuses_an_incomplete_fp8_checkpoint(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    scale = "model.layers.1.mlp.down_proj.weight_scale_inv"
    with pytest.raises(WeightSyncError, match=r"without their partner \(model.layers.1.mlp.down_proj.weight\)"):
        ModelRunner(str(_write_fp8(tiny_qwen3_dir, tmp_path / "no_scale", drop=scale)))
    with pytest.raises(WeightSyncError, match=r"lacks 1 weight\(s\) of the model \(model.norm.weight\)"):
        ModelRunner(str(_write_fp8(tiny_qwen3_dir, tmp_path / "no_norm", drop="model.norm.weight")))
