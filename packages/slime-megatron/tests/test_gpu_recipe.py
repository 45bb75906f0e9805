"""The CPU path of the GPU recipe (ci/gpu/megatron/bench_megatron_gpu.py); the CUDA path runs on a lent GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from slime_megatron_testsupport.results import ok

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def recipe(tp1_suite: dict) -> dict:
    """The recipe ran inside the TP1 world (see `scenarios.suite`)."""
    return ok(tp1_suite, "recipe")


def test_recipe_reports_throughput_and_memory_fields(recipe: dict) -> None:
    assert ok(recipe, "checkpoint")["params"] > 0
    train = ok(recipe, "train")
    assert train["mode"] == "train" and train["tokens"] > 0 and len(train["seconds_all"]) == 2
    assert train["tokens_per_s_per_gpu"] > 0
    assert train["mfu_6n"] is None and train["peak_memory_gib"] is None  # no peak FLOP/s or CUDA memory on CPU
    assert train["last_metrics"]["train/grad_norm"] > 0
    top = train["profile_top"]  # --profile: one more step under torch.profiler, its heaviest ops
    assert top and all(row["ms"] >= 0 and 0 <= row["share"] <= 1 for row in top)
    assert any("mm" in row["name"] for row in top)  # the GEMMs are among the heaviest ops even on the tiny shape
    assert train["profiled_step_s"] > 0 and train["gpu_busy_fraction"] is None  # no kernels on the CPU


def test_recipe_logits_comparison(recipe: dict) -> None:
    assert Path(ok(recipe, "logits_save")["saved"]).is_file()
    compare = ok(recipe, "logits_compare")
    assert compare["max_abs_diff"] == 0.0 and compare["argmax_agreement"] == 1.0


def test_param_count_matches_the_hf_model() -> None:
    import importlib.util

    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    spec = importlib.util.spec_from_file_location("bench", REPO_ROOT / "ci/gpu/megatron/bench_megatron_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(bench)
    vocab, hidden, layers, heads, kv, head_dim, ffn = bench.MODELS["tiny"]
    config = Qwen3Config(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=head_dim,
        intermediate_size=ffn,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    assert bench.count_params("tiny") == sum(p.numel() for p in model.parameters())
