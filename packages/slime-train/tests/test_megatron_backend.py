"""`--train-backend megatron` through slime.train on CPU: real megatron-core (gloo, the test kit's CPU shim),
real local engines behind the real router, the seeds' flags handed to Megatron; sync loop, weight sync,
torch_dist checkpoints and resume.

The job runs in a subprocess because the CPU shim must be installed before megatron is imported (it is never
part of the product; on a GPU machine nothing is patched)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

pytestmark = pytest.mark.slow

TESTING = Path(__file__).resolve().parents[3] / "testing"
RUNNER = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from slime_testkit import megatron_cpu_shim; megatron_cpu_shim.install(); "
    "from slime.train.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


def _run(flags: list[str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", RUNNER, str(TESTING), *flags]
    return subprocess.run(command, text=True, capture_output=True, timeout=900, check=False)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_megatron_backend_trains_syncs_saves_and_resumes(demo_files, job_flags, tmp_path):
    model, prompts = demo_files
    megatron = ["--train-backend", "megatron", "--no-ray", "--micro-batch-size", "4", "--global-batch-size", "8",
                "--adam-eps", "1e-4"]  # fmt: skip
    hf = tmp_path / "hf" / "rollout_{rollout_id}"
    first = _run(job_flags(model, prompts, tmp_path, "--num-rollout", "2", "--save-hf", str(hf), *megatron))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    trained = [row for row in _rows(tmp_path / "metrics.jsonl") if "train/loss" in row]
    assert [row["step"] for row in trained] == [0, 1]
    # Step 0 recomputes the rollout's own weights (bf16 Megatron vs the fp32 engine): no KL, no clipping.
    assert trained[0]["train/ppo_kl"] == pytest.approx(0.0, abs=1e-3)
    assert trained[0]["train/pg_clipfrac"] == 0.0
    assert trained[0]["train/train_rollout_logprob_abs_diff"] < 0.05
    # Step 1's samples came from the engines after the first weight push: the trainer's log-probs still agree,
    # so the Megatron export reached the engines under the right HF names.
    assert trained[1]["train/train_rollout_logprob_abs_diff"] < 0.05
    assert (tmp_path / "ckpt" / "iter_0000001").is_dir()
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read_text().strip() == "1"

    # --save-hf: the Megatron actor as an HF folder that transformers loads completely, holding trained weights.
    exported, info = AutoModelForCausalLM.from_pretrained(tmp_path / "hf" / "rollout_1", output_loading_info=True)
    assert not any(info.values()), info
    assert exported.config.dtype == torch.bfloat16
    initial = AutoModelForCausalLM.from_pretrained(model).state_dict()
    trained = exported.state_dict()
    assert trained.keys() == initial.keys()
    assert any(not torch.equal(trained[k].float(), initial[k].float()) for k in trained)

    resumed = _run(job_flags(model, prompts, tmp_path, "--num-rollout", "3", "--load", str(tmp_path / "ckpt"),
                             *megatron))  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-5000:]
    steps = [row["step"] for row in _rows(tmp_path / "metrics.jsonl") if "train/loss" in row]
    assert steps == [0, 1, 2]


def test_fp8_rollout_with_bf16_megatron_training(demo_files, job_flags, tmp_path):
    """slime's FP8 rollout: the engines serve a block-FP8 copy of the model (slime-convert hf-to-fp8), Megatron
    trains in bf16 from --ref-load, and every push quantizes the trained weights block-wise on the way out."""
    from slime.convert.hf_to_fp8 import HfToFp8Config, hf_to_fp8

    model, prompts = demo_files
    fp8 = hf_to_fp8(HfToFp8Config(input_dir=str(model), output_dir=str(tmp_path / "fp8"), block_size=16))
    flags = job_flags(model, prompts, tmp_path, "--num-rollout", "2", "--train-backend", "megatron", "--no-ray",
                      "--micro-batch-size", "4", "--global-batch-size", "8", "--adam-eps", "1e-4",
                      "--hf-checkpoint", str(fp8), "--ref-load", str(model), "--use-tis")  # fmt: skip
    result = _run(flags)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    trained = [row for row in _rows(tmp_path / "metrics.jsonl") if "train/loss" in row]
    assert [row["step"] for row in trained] == [0, 1]
    # FP8 engine weights vs bf16 training weights: the rollout log-probs differ measurably, but stay close, and
    # TIS weighs the mismatch (its clip fraction is logged).
    for row in trained:
        assert 1e-4 < row["train/train_rollout_logprob_abs_diff"] < 0.5, row
        assert "train/tis" in row or "train/tis_clipfrac" in row, sorted(row)


def test_fp8_rollout_refuses_a_training_source_it_cannot_use(demo_files, job_flags, tmp_path):
    from slime.convert.hf_to_fp8 import HfToFp8Config, hf_to_fp8
    from slime.train.compose import compose_run
    from slime.train.driver import parse_job_args
    from slime.train.resolve import Environment
    from slime.types import ConfigError

    model, prompts = demo_files
    fp8 = hf_to_fp8(HfToFp8Config(input_dir=str(model), output_dir=str(tmp_path / "fp8"), block_size=16))
    cpu = Environment(num_gpus=0, has_megatron=True, has_sglang=False)
    fp8_flags = job_flags(model, prompts, tmp_path, "--num-rollout", "1", "--hf-checkpoint", str(fp8))
    args, _ = parse_job_args(fp8_flags, async_loop=False, env=cpu)
    with pytest.raises(ConfigError, match="block-FP8 .* the fsdp trainer loads its weights from --hf-checkpoint"):
        compose_run(args)
    args, _ = parse_job_args([*fp8_flags, "--train-backend", "megatron"], async_loop=False, env=cpu)
    with pytest.raises(ConfigError, match="give the bf16 training weights with --ref-load"):
        compose_run(args)
