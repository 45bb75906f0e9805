"""On-policy distillation with an SGLang teacher, end to end on CPU, with slime's own plugin paths.

A student (the tiny Qwen3) generates through the real sglang-router; a teacher (another tiny Qwen3, seed 1) runs
as a real local server and scores the student's tokens through `/generate` with `max_new_tokens=0,
return_logprob, logprob_start_len=0`; the post-process fills `teacher_log_probs`. Teacher log-probs are checked
against a float64 transformers forward of the teacher. The `/generate` answer's shape follows sglang 0.5.17.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import torch

from slime.buffer import RolloutDataSource
from slime.sglang.engine_group import EngineGroup, EngineGroupConfig
from slime.sglang.engine_process import EngineProcess
from slime.sglang.rewards.on_policy_distillation import post_process_rewards, reward_func, teacher_payload
from slime.sglang.rollout import apply_reward_post_process, generate_rollout, shutdown_rollout_runtimes
from slime.sglang.router import RouterConfig
from slime.sglang.server_args import EngineConfig
from slime.types import ConfigError, ContractError, RolloutBatch, Sample, Status

pytestmark = pytest.mark.local_only
ATOL = 1e-5
"""fp32 engine vs float64 reference."""


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from slime_testkit.models import build_model

    return build_model(tmp_path_factory.mktemp("tiny_teacher"), "qwen3", seed=1)


@pytest.fixture(scope="module")
def teacher(teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The teacher: one local server, addressed directly (as `--rm-url <teacher>/generate`)."""
    logs = str(tmp_path_factory.mktemp("teacher_logs"))
    engine = EngineProcess(EngineConfig(model_path=str(teacher_dir), backend="local", startup_timeout_s=300,
                                        log_dir=logs))  # fmt: skip
    engine.launch()
    try:
        yield engine.url
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def student(tiny_qwen3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The student: one local server behind the real sglang-router; yields the router URL."""
    logs = str(tmp_path_factory.mktemp("student_logs"))
    engine = EngineConfig(model_path=str(tiny_qwen3_dir), backend="local", startup_timeout_s=300, log_dir=logs)
    with EngineGroup(EngineGroupConfig(engine=engine, num_engines=1, router=RouterConfig(log_dir=logs))) as group:
        try:
            yield group.router_url
        finally:
            shutdown_rollout_runtimes()


@pytest.fixture(scope="module")
def teacher_model(teacher_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float64).eval()


def reference_log_probs(model: torch.nn.Module, tokens: list[int]) -> list[float]:
    """log p(tokens[k] | tokens[:k]) for k >= 1, float64, one unpadded forward."""
    ids = torch.tensor([tokens])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    return logprobs.gather(-1, ids[0, 1:, None])[:, 0].tolist()


def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async def go():
        async with aiohttp.ClientSession() as session, session.post(f"{url}/generate", json=body) as resp:
            return resp.status, json.loads(await resp.text())

    return asyncio.run(go())


def test_prompt_scoring_answers_like_sglang(teacher: str, teacher_model: torch.nn.Module) -> None:
    tokens = [5, 17, 99, 3, 250, 42, 7, 7, 120]
    status, answer = post(teacher, teacher_payload(Sample(tokens=tokens)))
    assert status == 200
    meta = answer["meta_info"]
    assert answer["output_ids"] == [] and answer["text"] == ""
    assert meta["finish_reason"] == {"type": "length", "length": 0}
    assert meta["prompt_tokens"] == len(tokens) and meta["completion_tokens"] == 0
    assert meta["output_token_logprobs"] == [] and meta["output_token_logprobs_length"] == 0
    entries = meta["input_token_logprobs"]
    assert [e[1] for e in entries] == tokens and all(e[2] is None for e in entries)
    assert entries[0][0] is None  # SGLang: nothing predicts the first token
    reference = reference_log_probs(teacher_model, tokens)
    assert max(abs(e[0] - r) for e, r in zip(entries[1:], reference, strict=True)) < ATOL


def test_logprob_start_len_and_generation(teacher: str, teacher_model: torch.nn.Module) -> None:
    tokens = [9, 31, 64, 128, 200, 11]
    reference = reference_log_probs(teacher_model, tokens)
    body = {"input_ids": tokens, "sampling_params": {"max_new_tokens": 0}, "return_logprob": True}
    _, default = post(teacher, body)
    assert default["meta_info"]["input_token_logprobs"] == []  # SGLang's default (-1): output tokens only
    _, from3 = post(teacher, {**body, "logprob_start_len": 3})
    entries = from3["meta_info"]["input_token_logprobs"]
    assert [e[1] for e in entries] == tokens[3:] and entries[0][0] is None
    assert max(abs(e[0] - r) for e, r in zip(entries[1:], reference[3:], strict=True)) < ATOL
    _, last = post(teacher, {**body, "logprob_start_len": len(tokens)})
    assert last["meta_info"]["input_token_logprobs"] == []
    status, error = post(teacher, {**body, "logprob_start_len": len(tokens) + 1})
    assert status == 400 and "Please use a smaller logprob_start_len" in json.dumps(error)
    # while generating: the input entries plus the sampled tokens' own log-probs, both teacher-forced
    gen = {**body, "logprob_start_len": 0, "sampling_params": {"max_new_tokens": 4, "temperature": 0.0}}
    _, out = post(teacher, gen)
    full = tokens + out["output_ids"]
    reference_full = reference_log_probs(teacher_model, full)
    inputs, outputs = out["meta_info"]["input_token_logprobs"], out["meta_info"]["output_token_logprobs"]
    assert len(inputs) == len(tokens) and len(outputs) == 4
    got = [e[0] for e in inputs[1:]] + [e[0] for e in outputs]
    assert max(abs(a - b) for a, b in zip(got, reference_full, strict=True)) < ATOL


def _args(student: str, tiny_qwen3_dir: Path, prompt_data: str, teacher: str) -> argparse.Namespace:
    ip, port = student.removeprefix("http://").split(":")
    return argparse.Namespace(
        sglang_router_ip=ip, sglang_router_port=int(port), hf_checkpoint=str(tiny_qwen3_dir),
        prompt_data=prompt_data, input_key="input", label_key=None, metadata_key="metadata",
        apply_chat_template=False, apply_chat_template_kwargs={}, rollout_batch_size=2, n_samples_per_prompt=2,
        over_sampling_batch_size=None, rollout_max_response_len=6, rollout_temperature=1.0, rollout_top_p=1.0,
        rollout_top_k=-1, rollout_stop=None, rollout_stop_token_ids=None, rollout_skip_special_tokens=False,
        sglang_server_concurrency=8, partial_rollout=False, mask_offpolicy_in_partial_rollout=False,
        dynamic_sampling_filter_path=None, custom_generate_function_path=None, group_rm=False, rm_type=None,
        reward_key=None, rollout_sample_hook_path=[],
        # slime's recipe, flag for flag
        use_opd=True, opd_type="sglang", rm_url=f"{teacher}/generate",
        custom_rm_path="slime.rollout.on_policy_distillation.reward_func",
        custom_reward_post_process_path="slime.rollout.on_policy_distillation.post_process_rewards",
    )  # fmt: skip


def test_opd_rollout_fills_teacher_log_probs(
    student: str, teacher: str, tiny_qwen3_dir: Path, teacher_model: torch.nn.Module, tmp_path: Path
) -> None:
    rows = [{"input": f"Distil {i} into {i + 1}."} for i in range(2)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = _args(student, tiny_qwen3_dir, str(tmp_path / "p.jsonl"), teacher)
    groups = generate_rollout(args, 0, RolloutDataSource.from_args(args))
    samples = [s for g in groups for s in g]
    assert len(samples) == 4 and "rollout/reward_mean" not in groups.metrics  # rewards are not final yet
    assert all(isinstance(s.reward, dict) and s.teacher_log_probs is None for s in samples)
    rewards = apply_reward_post_process(args, groups)
    assert rewards == [0.0] * 4
    for sample in samples:
        assert sample.status in (Status.COMPLETED, Status.TRUNCATED) and sample.reward == 0.0
        assert len(sample.teacher_log_probs) == sample.response_length > 0
        reference = reference_log_probs(teacher_model, sample.tokens)[-sample.response_length :]
        assert max(abs(a - b) for a, b in zip(sample.teacher_log_probs, reference, strict=True)) < ATOL
        # the student sampled these tokens; the teacher (other weights) scores them differently
        assert max(abs(a - b) for a, b in zip(sample.teacher_log_probs, sample.rollout_log_probs, strict=True)) > 1e-3
    batch = RolloutBatch.from_groups(0, groups)
    assert [t.teacher_log_probs for t in batch.samples] == [tuple(s.teacher_log_probs) for s in samples]


def test_teacher_behind_the_router_gets_logprob_start_len(student: str) -> None:
    """sglang-router drops /generate fields it does not know; logprob_start_len must survive it."""
    tokens = [5, 17, 99, 3, 250]
    status, answer = post(student, teacher_payload(Sample(tokens=tokens)))
    assert status == 200 and [e[1] for e in answer["meta_info"]["input_token_logprobs"]] == tokens


def test_wrong_setups_fail_with_the_fix() -> None:
    sample = Sample(index=3, tokens=[1, 2, 3, 4], response_length=2, status=Status.COMPLETED)
    with pytest.raises(ConfigError, match="--rm-url"):
        asyncio.run(reward_func(argparse.Namespace(rm_url=None), sample))
    sample.reward = 1.0  # e.g. --custom-rm-path left at a task reward
    with pytest.raises(ContractError, match="on_policy_distillation.reward_func"):
        post_process_rewards(argparse.Namespace(), [sample])
    sample.reward = {"meta_info": {"input_token_logprobs": [[None, 4, None]]}}  # default logprob_start_len
    with pytest.raises(ContractError, match="logprob_start_len=0"):
        post_process_rewards(argparse.Namespace(), [sample])


def test_post_process_contract_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad_post_process.py").write_text("def one_list(args, samples, **kwargs):\n    return [0.0]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    args = argparse.Namespace(custom_reward_post_process_path="bad_post_process:one_list")
    sample = Sample(index=0, tokens=[1, 2], response_length=1, reward=1.0, status=Status.COMPLETED)
    with pytest.raises(ContractError, match="raw_rewards, rewards"):
        apply_reward_post_process(args, [[sample]])
    assert apply_reward_post_process(argparse.Namespace(custom_reward_post_process_path=None), [[sample]]) is None
