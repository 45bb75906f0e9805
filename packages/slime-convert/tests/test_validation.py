"""A config that does not fit the checkpoint stops every conversion with the tensor's name and both shapes, and
nothing is written: no output folder, no temporary folder left behind."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from slime_convert_testsupport.compare import tensors

from slime.convert import TorchDistToHfConfig, main, torch_dist_to_hf

module = importlib.import_module("slime.convert.torch_dist_to_hf")  # the package attribute is the function


def edited(src: Path, dst: Path, **changes) -> Path:
    """A copy of an HF folder whose config.json has `changes`."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps(config | changes))
    return dst


def fails(capsys, argv: list[str], *needles: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err


def only(folder: Path, *names: str) -> None:
    """`folder` holds exactly `names` (so no output and no `*.tmp-*` folder appeared)."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_hf_weights_that_do_not_fit_their_config(models, tmp_path, capsys):
    bad = edited(models["qwen3"], tmp_path / "bad", intermediate_size=96)
    argv = ["hf-to-torch-dist", "--hf-checkpoint", str(bad), "--save", str(tmp_path / "td")]
    fails(capsys, argv, "'model.layers.0.mlp.gate_proj.weight'", "(128, 64)", "(96, 64)")
    fails(capsys, ["hf-to-dcp", *argv[1:]], "'model.layers.1.mlp.down_proj.weight'", "(64, 128)", "(64, 96)")
    fails(capsys, ["check", "--hf-checkpoint", str(bad)], "mlp.up_proj.weight")
    only(tmp_path, "bad")


def test_megatron_shape_flags_must_agree(models, tmp_path, capsys):
    argv = ["hf-to-torch-dist", "--hf-checkpoint", str(models["qwen3"]), "--save", str(tmp_path / "td")]
    fails(capsys, [*argv, "--hidden-size", "32", "--num-query-groups", "4"], "--hidden-size: given 32", "64")
    fails(capsys, [*argv, "--padded-vocab-size", "300"], "--padded-vocab-size 300", "256")
    only(tmp_path)


def test_torch_dist_against_another_head_count(megatron_single, models, tmp_path, capsys):
    origin = edited(models["qwen3"], tmp_path / "origin", num_key_value_heads=4)
    td = str(megatron_single / "qwen3_td" / "release")
    argv = ["torch-dist-to-hf", "--input-dir", td, "--output-dir", str(tmp_path / "out"), "--origin-hf-dir"]
    qkv = (
        "'decoder.layers.0.self_attention.linear_qkv.weight': checkpoint has shape (128, 64), config implies (192, 64)"
    )
    fails(capsys, [*argv, str(origin)], qkv)
    to_hf = ["megatron-to-hf", "--load", str(megatron_single / "qwen3_td"), "--output-dir", str(tmp_path / "out")]
    fails(capsys, [*to_hf, "--hf-checkpoint", str(origin)], qkv)
    fails(capsys, ["check", "--hf-checkpoint", str(origin)], "'model.layers.0.self_attn.k_proj.weight'", "(32, 64)")
    only(tmp_path, "origin")


def test_torch_dist_against_tied_embeddings_and_a_bigger_vocab(megatron_single, models, tmp_path, capsys):
    tied = edited(models["qwen2"], tmp_path / "tied", tie_word_embeddings=True)
    td = str(megatron_single / "qwen2_td")
    argv = ["torch-dist-to-hf", "--input-dir", td, "--output-dir", str(tmp_path / "out"), "--origin-hf-dir"]
    fails(capsys, [*argv, str(tied)], "'output_layer.weight' (shape (384, 64)) is in the checkpoint but not implied")
    fails(capsys, [*argv, str(models["qwen2"]), "--vocab-size", "400"], "--vocab-size 400 exceeds", "384")
    big = edited(models["qwen2"], tmp_path / "big", vocab_size=512)
    fails(capsys, [*argv, str(big)], "'embedding.word_embeddings.weight' has 384 rows, fewer than", "512")
    only(tmp_path, "tied", "big")


def test_explicit_vocab_size_cuts_the_padding_there(megatron_single, models, tmp_path):
    out = torch_dist_to_hf(
        TorchDistToHfConfig(
            input_dir=str(megatron_single / "qwen2_td"), output_dir=str(tmp_path / "out"),
            origin_hf_dir=str(models["qwen2"]), vocab_size=256, quiet=True,
        )
    )  # fmt: skip
    got, original = tensors(out), tensors(models["qwen2"])
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(got[name], original[name][:256])
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 256


def test_dcp_against_another_config(fsdp_checkpoints, models, tmp_path, capsys):
    origin = edited(models["llama"], tmp_path / "origin", num_hidden_layers=3)
    argv = ["dcp-to-hf", "--input-dir", str(fsdp_checkpoints["llama"]), "--output-dir", str(tmp_path / "out")]
    fails(capsys, [*argv, "--origin-hf-dir", str(origin)], "'model.layers.2.input_layernorm.weight' is missing")
    only(tmp_path, "origin")


def test_a_failure_while_writing_leaves_nothing(megatron_single, models, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(module, "write_config_and_assets", broken)
    config = dict(input_dir=str(megatron_single / "llama_td"), origin_hf_dir=str(models["llama"]), quiet=True)
    with pytest.raises(OSError, match="disk full"):
        torch_dist_to_hf(TorchDistToHfConfig(output_dir=str(tmp_path / "out"), **config))
    only(tmp_path)


def test_an_existing_output_needs_force(megatron_single, models, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.txt").write_text("old")
    td, origin = str(megatron_single / "llama_td"), str(models["llama"])
    argv = ["torch-dist-to-hf", "--input-dir", td, "--origin-hf-dir", origin, "--output-dir", str(tmp_path / "out")]
    fails(capsys, argv, "already exists", "--force")
    assert main([*argv, "--force", "--quiet"]) == 0
    assert not (tmp_path / "out" / "stale.txt").exists() and (tmp_path / "out" / "model.safetensors").is_file()
    only(tmp_path, "out")
