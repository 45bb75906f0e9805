"""The tiny model variants the tests convert, and the jobs (`worker.py` steps) that run the Megatron conversions."""

from __future__ import annotations

from pathlib import Path

FAMILIES = ("qwen3", "qwen2", "llama")
VARIANTS = {
    "qwen3": {"vocab_size": 256, "tie_word_embeddings": False},
    "qwen2": {"vocab_size": 300, "tie_word_embeddings": False},
    "llama": {"vocab_size": 300, "tie_word_embeddings": True},
}
QWEN3_MODEL_ARGS = (
    "--num-layers 2 --hidden-size 64 --ffn-hidden-size 128 --swiglu --vocab-size 256 --disable-bias-linear "
    "--num-attention-heads 4 --group-query-attention --num-query-groups 2 --kv-channels 16 --qk-layernorm "
    "--normalization RMSNorm --norm-epsilon 1e-6 --use-rotary-position-embeddings --rotary-base 10000 "
    "--untie-embeddings-and-output-weights"
).split()
"""The seeds' `scripts/models/qwen3-*.sh` style shape flags, for the tiny Qwen3 (they must agree with its config)."""


def single_rank_job(models: dict[str, Path], out: Path) -> list:
    """HF -> torch_dist for every family (tool script), then torch_dist and torch format -> HF (trainer path)."""
    steps: list = []
    for family in FAMILIES:
        flags = QWEN3_MODEL_ARGS if family == "qwen3" else []
        args = ["--hf-checkpoint", str(models[family]), "--save", str(out / f"{family}_td"), "--quiet", *flags]
        steps.append(["tool", "tools/convert_hf_to_torch_dist.py", args])
    for family in FAMILIES:  # the trainer's export path; an unrelated training flag is ignored
        args = ["megatron-to-hf", "--hf-checkpoint", str(models[family]), "--load", str(out / f"{family}_td")]
        steps.append(
            ["cli", [*args, "--output-dir", str(out / f"{family}_mhf"), "--quiet", "--rollout-batch-size", "8"]]
        )
    steps.append(
        [
            "call",
            "write_legacy_checkpoint",
            {"hf_dir": str(models["qwen3"]), "root": str(out / "legacy"), "iteration": 7},
        ]
    )
    legacy = ["--ckpt-format", "torch", "--load", str(out / "legacy"), "--hf-checkpoint", str(models["qwen3"])]
    steps.append(["tool", "tools/convert_to_hf.py", [*legacy, "--output-dir", str(out / "legacy_hf"), "--quiet"]])
    steps.append(["call", "record_local_aliases", {"out": str(out / "local_aliases.json")}])
    return steps


def two_rank_job(models: dict[str, Path], out: Path) -> list:
    """HF -> torch_dist on 2 ranks (PP=2 chosen), then that checkpoint -> HF with TP=2 (resharded on load)."""
    hf, td = str(models["qwen2"]), str(out / "pp2_td")
    to_hf = [
        "--load",
        td,
        "--hf-checkpoint",
        hf,
        "--tensor-model-parallel-size",
        "2",
        "--output-dir",
        str(out / "tp2_hf"),
    ]
    return [
        ["tool", "tools/convert_hf_to_torch_dist.py", ["--hf-checkpoint", hf, "--save", td, "--quiet"]],
        ["tool", "tools/convert_to_hf.py", [*to_hf, "--quiet"]],
    ]
