"""HF <-> slime.fsdp DCP checkpoints: bit-exact both ways, resumable by the FSDP trainer, LoRA merged on export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from slime_convert_testsupport.compare import assert_bit_exact, logits, tensors
from slime_convert_testsupport.jobs import FAMILIES

from slime.convert import DcpToHfConfig, dcp_to_hf, main
from slime.types import ConfigError


@pytest.mark.parametrize("family", FAMILIES)
def test_hf_dcp_hf_is_bit_exact_with_equal_logits(family, fsdp_checkpoints, models, tmp_path):
    root = fsdp_checkpoints[family]
    assert (root / "latest_checkpointed_iteration.txt").read_text().strip() == "0"
    assert json.loads((root / "iter_0000000" / "meta.json").read_text())["format"] == "slime.fsdp/1"
    out = tmp_path / "hf"
    args = ["dcp-to-hf", "--input-dir", str(root), "--output-dir", str(out), "--origin-hf-dir", str(models[family])]
    assert main([*args, "--quiet"]) == 0
    assert_bit_exact(out, models[family])
    assert torch.equal(logits(out), logits(models[family]))


def test_bf16_weights_come_back_as_bf16(fsdp_checkpoints, tmp_path):
    origin = fsdp_checkpoints["qwen3_bf16"].parent / "hf_qwen3_bf16"
    out = dcp_to_hf(
        DcpToHfConfig(
            input_dir=str(fsdp_checkpoints["qwen3_bf16"] / "iter_0000000"), output_dir=str(tmp_path / "hf"),
            origin_hf_dir=str(origin), quiet=True,
        )
    )  # fmt: skip
    assert_bit_exact(out, origin)


def test_fsdp_trainer_resumes_from_the_converted_checkpoint(fsdp_checkpoints, models):
    from slime.fsdp import FSDPConfig, FSDPPolicy, init_distributed

    torch.set_num_threads(1)
    config = FSDPConfig(hf_checkpoint=str(models["qwen2"]), load=str(fsdp_checkpoints["qwen2"]), export_dtype="float32")
    policy = FSDPPolicy(config, init_distributed("cpu"))
    assert policy.start_rollout_id == 1
    original = tensors(models["qwen2"])
    exported = dict(policy.export_weights())
    assert sorted(exported) == sorted(original)
    assert all(torch.equal(exported[name], original[name]) for name in original)


def _synthetic_lora_checkpoint(hf_dir: Path, root: Path, rank: int) -> dict[str, torch.Tensor]:
    """A slime.fsdp-layout checkpoint of a peft model: base weights plus LoRA A/B on every q_proj."""
    import torch.distributed.checkpoint as dcp

    gen = torch.Generator().manual_seed(3)
    state, adapters = {}, {}
    for name, tensor in tensors(hf_dir).items():
        if name.endswith("q_proj.weight"):
            owner = "model.base_model.model." + name.removesuffix(".weight")
            state[owner + ".base_layer.weight"] = tensor
            a = torch.randn(rank, tensor.shape[1], generator=gen)
            b = torch.randn(tensor.shape[0], rank, generator=gen)
            state[owner + ".lora_A.default.weight"], state[owner + ".lora_B.default.weight"] = a, b
            adapters[name] = tensor + (b @ a) * (8.0 / rank)
        else:
            state["model.base_model.model." + name] = tensor
    folder = root / "iter_0000004"
    with pytest.warns(UserWarning, match="single process"):
        dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    (folder / "meta.json").write_text(json.dumps({"format": "slime.fsdp/1", "rollout_id": 4, "world_size": 1}))
    (root / "latest_checkpointed_iteration.txt").write_text("4\n")
    return adapters


def test_lora_adapters_are_merged(models, tmp_path):
    merged = _synthetic_lora_checkpoint(models["qwen3"], tmp_path / "ckpt", rank=4)
    config = dict(input_dir=str(tmp_path / "ckpt"), origin_hf_dir=str(models["qwen3"]), quiet=True)
    with pytest.raises(ConfigError, match="--lora-alpha"):
        dcp_to_hf(DcpToHfConfig(output_dir=str(tmp_path / "no"), **config))
    assert not (tmp_path / "no").exists()
    out = dcp_to_hf(DcpToHfConfig(output_dir=str(tmp_path / "hf"), lora_alpha=8.0, **config))
    got, original = tensors(out), tensors(models["qwen3"])
    assert sorted(got) == sorted(original)
    for name, tensor in original.items():
        torch.testing.assert_close(got[name], merged.get(name, tensor), rtol=0, atol=1e-5)
