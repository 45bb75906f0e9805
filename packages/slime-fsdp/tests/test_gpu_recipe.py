"""The GPU recipe `ci/gpu/fsdp/bench_fsdp_gpu.py` runs its whole path on CPU with a tiny shape (logic check)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[3] / "ci" / "gpu" / "fsdp" / "bench_fsdp_gpu.py"


def test_recipe_cpu_path(dist_ws1, capsys):
    spec = importlib.util.spec_from_file_location("bench_fsdp_gpu", RECIPE)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    argv = ["--device", "cpu", "--model", "tiny", "--samples", "8", "--seq-len", "32", "--max-tokens", "96"]
    result = recipe.main([*argv, "--repeats", "1"])
    assert '"tokens_per_s"' in capsys.readouterr().out
    assert [row["name"] for row in result["rows"]] == ["train grpo", "log-probs", "train grpo+kl"]
    assert result["params"] > 0 and result["tokens_per_step"] > 0
    assert all(row["tokens_per_s"] > 0 and row["mfu_6n"] is None for row in result["rows"])  # no CPU peak
    # The 0.6B shape is the public Qwen3-0.6B: 596M parameters with tied embeddings.
    vocab, hidden, layers, heads, kv_heads, head_dim, ffn = recipe.MODELS["0.6b"]
    attn = hidden * head_dim * (2 * heads + 2 * kv_heads) + 2 * head_dim
    params = vocab * hidden + layers * (attn + 3 * hidden * ffn + 2 * hidden) + hidden
    assert 595e6 < params < 597e6
