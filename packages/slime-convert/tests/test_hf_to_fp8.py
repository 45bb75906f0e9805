"""`slime-convert hf-to-fp8`: the FP8 folder dequantizes back within the bound and carries quantization_config."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slime.convert import main
from slime.sync.block_fp8 import FP8_DTYPE, dequantize_block_fp8
from slime.sync.fp8_rollout import Fp8QuantPlan

REPO_ROOT = Path(__file__).resolve().parents[3]


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        out |= load_file(str(file))
    return out


def _assert_fp8_of(out: Path, origin: Path, block: int) -> None:
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"] == {
        "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [block, block],
    }  # fmt: skip
    assert config | {"quantization_config": None} == json.loads((origin / "config.json").read_text()) | {
        "quantization_config": None
    }
    plan = Fp8QuantPlan.from_hf_config(config)
    assert plan is not None
    bf16, fp8 = _tensors(origin), _tensors(out)
    quantized = [n for n, t in bf16.items() if plan.is_quantized(n, t.shape)]
    assert quantized and set(fp8) == set(bf16) | {f"{n}_scale_inv" for n in quantized}
    for name, tensor in bf16.items():
        if name not in quantized:
            assert torch.equal(fp8[name], tensor), name
            continue
        assert fp8[name].dtype == FP8_DTYPE
        scale = fp8[f"{name}_scale_inv"]
        deq = dequantize_block_fp8(fp8[name], scale, (block, block), dtype=torch.float64)
        t = tensor.double()
        s = scale.double().repeat_interleave(block, 0).repeat_interleave(block, 1)[: t.shape[0], : t.shape[1]]
        assert bool(((deq - t).abs() <= 2.0**-4 * t.abs() + 2.0**-10 * s + 2.0**-20 * t.abs()).all()), name
    for asset in origin.iterdir():
        if asset.suffix != ".safetensors" and asset.name != "config.json":
            assert (out / asset.name).read_bytes() == asset.read_bytes()


@pytest.mark.parametrize("block", [128, 16])
def test_hf_to_fp8_on_tiny_qwen3(tiny_qwen3_dir: Path, tmp_path: Path, block: int) -> None:
    out = tmp_path / "Qwen3-FP8"
    argv = ["hf-to-fp8", "--input-dir", str(tiny_qwen3_dir), "--output-dir", str(out), "--quiet"]
    assert main([*argv, "--block-size", str(block), "--chunk-size", "20000"]) == 0
    assert (out / "model.safetensors.index.json").is_file()  # several shards, indexed
    _assert_fp8_of(out, tiny_qwen3_dir, block)
    assert not list(tmp_path.glob("*.tmp-*"))


def test_refuses_an_fp8_input_and_an_occupied_output(tiny_qwen3_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fp8"
    assert main(["hf-to-fp8", "--input-dir", str(tiny_qwen3_dir), "--output-dir", str(out), "--quiet"]) == 0
    assert main(["hf-to-fp8", "--input-dir", str(out), "--output-dir", str(tmp_path / "again"), "--quiet"]) == 2
    assert "is already quantized" in capsys.readouterr().err
    assert main(["hf-to-fp8", "--input-dir", str(tiny_qwen3_dir), "--output-dir", str(out), "--quiet"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["hf-to-fp8", "--input-dir", str(tiny_qwen3_dir), "--output-dir", str(out), "--block-size", "0"]) == 2
    assert "--block-size" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()


def test_seeds_tool_script(tiny_qwen3_dir: Path, tmp_path: Path, monkeypatch) -> None:
    script = str(REPO_ROOT / "tools" / "convert_hf_to_fp8.py")
    argv = ["--model-dir", str(tiny_qwen3_dir), "--save-dir", str(tmp_path / "o"), "--strategy", "block"]
    monkeypatch.setattr(sys, "argv", [script, *argv, "--block-size", "32", "--max-workers", "4", "--quiet"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    assert done.value.code == 0
    _assert_fp8_of(tmp_path / "o", tiny_qwen3_dir, 32)
