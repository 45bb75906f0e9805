"""HF -> torch_dist -> HF through Megatron (tool scripts, CPU worlds of 1 and 2 ranks) is bit-exact.

The torch_dist checkpoints are written by `tools/convert_hf_to_torch_dist.py` (mbridge + dist_checkpointing) and
read back two ways that must agree tensor for tensor: without Megatron (`torch-dist-to-hf`, our own name maps)
and through the trainer's export (`megatron-to-hf`, mbridge's). Both equal the original safetensors, the
padded vocabulary rows are cut, and the logits of the round-tripped model equal the original's.
"""

from __future__ import annotations

import json

import pytest
import torch
from slime_convert_testsupport.compare import assert_bit_exact, logits
from slime_convert_testsupport.jobs import FAMILIES, VARIANTS

from slime.convert import TorchDistToHfConfig, torch_dist_to_hf
from slime.convert.dcp_folder import DcpFolder
from slime.convert.megatron_names import LOCAL_ALIASES


@pytest.mark.parametrize("family", FAMILIES)
def test_torch_dist_checkpoint_layout(family, megatron_single, models):
    root = megatron_single / f"{family}_td"
    assert (root / "latest_checkpointed_iteration.txt").read_text().strip() == "release"
    assert json.loads((root / "release" / "metadata.json").read_text())["sharded_backend"] == "torch_dist"
    assert not [p for p in megatron_single.iterdir() if ".tmp-" in p.name]
    infos = DcpFolder(root / "release").tensor_infos()
    embedding = infos["embedding.word_embeddings.weight"][0]
    assert embedding == (-(-VARIANTS[family]["vocab_size"] // 128) * 128, 64)  # Megatron's padding
    assert ("output_layer.weight" in infos) == (not VARIANTS[family]["tie_word_embeddings"])
    padded_rows = DcpFolder(root / "release").load(["embedding.word_embeddings.weight"])
    assert not padded_rows["embedding.word_embeddings.weight"][VARIANTS[family]["vocab_size"] :].any()


@pytest.mark.parametrize("family", FAMILIES)
def test_without_megatron_is_bit_exact(family, megatron_single, models, tmp_path):
    out = torch_dist_to_hf(
        TorchDistToHfConfig(
            input_dir=str(megatron_single / f"{family}_td" / "release"),
            output_dir=str(tmp_path / "hf"),
            origin_hf_dir=str(models[family]),
            quiet=True,
        )
    )
    assert_bit_exact(out, models[family])
    assert json.loads((out / "config.json").read_text()) == json.loads((models[family] / "config.json").read_text())
    assert (out / "tokenizer.json").read_bytes() == (models[family] / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("family", FAMILIES)
def test_trainer_export_path_is_bit_exact(family, megatron_single, models):
    assert_bit_exact(megatron_single / f"{family}_mhf", models[family])


def test_legacy_torch_format(megatron_single, models):
    assert_bit_exact(megatron_single / "legacy_hf", models["qwen3"])


def test_two_ranks_pipeline_save_then_tensor_parallel_export(megatron_multi, models, tmp_path):
    assert DcpFolder(megatron_multi / "pp2_td" / "release").tensor_infos()["output_layer.weight"][0] == (384, 64)
    assert_bit_exact(megatron_multi / "tp2_hf", models["qwen2"])
    out = torch_dist_to_hf(
        TorchDistToHfConfig(
            input_dir=str(megatron_multi / "pp2_td"), output_dir=str(tmp_path / "hf"),
            origin_hf_dir=str(models["qwen2"]), chunk_size=20_000, quiet=True,
        )
    )  # fmt: skip
    assert_bit_exact(out, models["qwen2"])
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and not (out / "model.safetensors").exists()


def test_local_name_aliases_match_slime_megatron(megatron_single):
    assert json.loads((megatron_single / "local_aliases.json").read_text()) == LOCAL_ALIASES


@pytest.mark.parametrize("family", FAMILIES)
def test_round_tripped_logits_equal_the_original(family, megatron_single, models):
    assert torch.equal(logits(megatron_single / f"{family}_mhf"), logits(models[family]))
