"""Megatron (real megatron-core on gloo, TP=1 and TP=2 with sequence parallelism) against the HF model.

The worlds run in subprocesses (see conftest); here the HF reference is computed in the test process with
plain transformers, so the CPU shim of the workers cannot influence the reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from slime_megatron_testsupport.results import max_abs_diff, ok

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf_logits(tiny_qwen3_dir: Path, tp1_suite: dict) -> list[torch.Tensor]:
    """HF logits of every sample of the suites' batch, one forward per sample (no packing)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return [model(torch.tensor([s.tokens])).logits[0] for s in tp1_suite["batch"].samples]


def test_packed_logits_equal_hf(suite: dict, hf_logits: list[torch.Tensor]) -> None:
    got = ok(suite, "logits")
    assert got["megatron_thd_rope_calls"] == 0  # packed rows are rotated by slime.megatron.packed_rope
    cu = got["cu_seqlens"].tolist()
    for i, ref in enumerate(hf_logits):
        torch.testing.assert_close(got["logits"][cu[i] : cu[i + 1]], ref, rtol=0, atol=2e-6)
        assert torch.equal(got["logits"][cu[i] : cu[i + 1]].argmax(-1), ref.argmax(-1))


def test_log_probs_equal_hf(suite: dict, hf_logits: list[torch.Tensor]) -> None:
    from slime.loss import log_probs_from_logits

    actor = ok(suite, "log_probs")["actor"]
    for sample, logits, got in zip(suite["batch"].samples, hf_logits, actor, strict=True):
        p = sample.prompt_length
        ref = log_probs_from_logits(logits[p - 1 : -1], torch.tensor(sample.tokens[p:]))
        torch.testing.assert_close(got, ref, rtol=0, atol=5e-6)


def test_vocab_parallel_log_prob_entropy_and_grad_match_single_device(suite: dict) -> None:
    diffs = ok(suite, "vocab_parallel")
    assert diffs["log_prob"] < 1e-12 and diffs["entropy"] < 1e-12 and diffs["grad"] < 1e-12, diffs


def test_hf_export_equals_source_weights(suite: dict, tiny_qwen3_dir: Path) -> None:
    from safetensors.torch import load_file

    source = load_file(tiny_qwen3_dir / "model.safetensors")
    exported = ok(suite, "export_initial")
    assert sorted(exported) == sorted(source)
    assert max_abs_diff(exported, source) == 0.0


def test_tp2_matches_tp1(tp1_suite: dict, tp2_suite: dict) -> None:
    for a, b in zip(ok(tp1_suite, "log_probs")["actor"], ok(tp2_suite, "log_probs")["actor"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-6)
    m1, m2 = ok(tp1_suite, "first_step"), ok(tp2_suite, "first_step")
    assert m1["train/grad_norm"] == pytest.approx(m2["train/grad_norm"], rel=1e-5)
    assert m1["train/loss"] == pytest.approx(m2["train/loss"], rel=1e-5, abs=1e-7)
