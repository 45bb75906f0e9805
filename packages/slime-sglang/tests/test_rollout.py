"""The default rollout end to end on CPU: 2 local servers behind the real sglang-router, the tiny Qwen3.

One cluster per module. Responses are at most 8 tokens (longer only where a test needs a request to be in
flight when the rollout aborts). Test plugins live in a real module on sys.path, as a user's would.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from slime.buffer import RolloutDataSource
from slime.sglang.engine_group import EngineGroup, EngineGroupConfig
from slime.sglang.rewards import shutdown_grading_pool
from slime.sglang.rollout import EvalRolloutOutput, RolloutGroups, generate_rollout, shutdown_rollout_runtimes
from slime.sglang.rollout.runtime import load_tokenizer
from slime.sglang.router import RouterConfig
from slime.sglang.server_args import EngineConfig
from slime.types import Sample, Status

PLUGINS = textwrap.dedent(
    '''
    import asyncio

    from slime.buffer.filters import DynamicFilterOutput
    from slime.sglang.rollout import generate

    CANCELLED = []
    EVAL_FLAGS = []

    async def parity_reward(args, sample, **kwargs):
        return float(sample.response_length % 2)

    async def group_index_reward(args, sample, **kwargs):
        return float(sample.group_index % 2)

    async def rank_in_group(args, samples, **kwargs):
        return [float(i) for i in range(len(samples))]

    async def slow_for_odd_groups(args, sample, **kwargs):
        if sample.group_index % 2 == 0:
            await asyncio.sleep(1.0)  # the odd group's generation is surely over by the time this one is kept
            return 1.0
        try:
            await asyncio.sleep(300)
        except asyncio.CancelledError:
            CANCELLED.append(sample.index)
            raise
        return 0.0

    def keep_even_groups(args, samples, **kwargs):
        keep = samples[0].group_index % 2 == 0
        return DynamicFilterOutput(keep=keep, reason=None if keep else "odd_group")

    async def budget_generate(args, sample, sampling_params, evaluation=False):
        """The default generate with ignore_eos and a per-sample token budget (and an optional head start delay)."""
        EVAL_FLAGS.append(evaluation)
        await asyncio.sleep(sample.metadata.get("delay", 0.0))
        params = dict(sampling_params, ignore_eos=True)
        budget = sample.metadata.get("budget") or getattr(args, "test_budget", None)
        params["max_new_tokens"] = budget or sampling_params["max_new_tokens"]
        return await generate(args, sample, params)

    def tag_hook(args, sample, *, rollout_id, evaluation):
        sample.metadata["hooked"] = [rollout_id, evaluation]
    '''
)


@pytest.fixture(scope="module")
def cluster(tiny_qwen3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two local servers registered with a real sglang-router; yields the router URL."""
    logs = str(tmp_path_factory.mktemp("rollout_logs"))
    engine = EngineConfig(model_path=str(tiny_qwen3_dir), backend="local", startup_timeout_s=300, log_dir=logs)
    group = EngineGroup(EngineGroupConfig(engine=engine, num_engines=2, router=RouterConfig(log_dir=logs)))
    with group:
        try:
            yield group.router_url
        finally:
            shutdown_rollout_runtimes()
            shutdown_grading_pool()


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    folder = tmp_path_factory.mktemp("rollout_plugins")
    (folder / "rollout_e2e_plugins.py").write_text(PLUGINS)
    sys.path.insert(0, str(folder))
    import rollout_e2e_plugins  # type: ignore[import-not-found]

    yield rollout_e2e_plugins
    sys.path.remove(str(folder))
    sys.modules.pop("rollout_e2e_plugins", None)


def _write(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _args(cluster: str, tiny_qwen3_dir: Path, prompt_data: str, **kw: Any) -> argparse.Namespace:
    ip, port = cluster.removeprefix("http://").split(":")
    base = {
        "sglang_router_ip": ip, "sglang_router_port": int(port), "hf_checkpoint": str(tiny_qwen3_dir),
        "prompt_data": prompt_data, "input_key": "input", "label_key": "label", "metadata_key": "metadata",
        "apply_chat_template": False, "apply_chat_template_kwargs": {}, "rollout_batch_size": 2,
        "n_samples_per_prompt": 2, "over_sampling_batch_size": None, "rollout_max_response_len": 8,
        "rollout_temperature": 1.0, "rollout_top_p": 1.0, "rollout_top_k": -1, "rollout_stop": None,
        "rollout_stop_token_ids": None, "rollout_skip_special_tokens": False, "sglang_server_concurrency": 8,
        "partial_rollout": False, "mask_offpolicy_in_partial_rollout": False, "dynamic_sampling_filter_path": None,
        "custom_generate_function_path": None, "custom_rm_path": "rollout_e2e_plugins:parity_reward",
        "group_rm": False, "rm_type": None, "reward_key": None, "rollout_sample_hook_path": [],
    }  # fmt: skip
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> str:
    rows = [{"input": f"What is {i} + {i + 1}?", "label": str(2 * i + 1)} for i in range(6)]
    return _write(tmp_path_factory.mktemp("data") / "prompts.jsonl", rows)


def _check_trainable(sample: Sample, max_len: int) -> None:
    sample.validate()
    assert sample.status in (Status.COMPLETED, Status.TRUNCATED)
    assert sample.reward is not None
    assert 0 < sample.response_length <= max_len
    assert len(sample.rollout_log_probs) == len(sample.loss_mask) == sample.response_length
    assert all(lp <= 0.0 for lp in sample.rollout_log_probs)


def test_full_rollout_returns_exactly_the_batch(cluster: str, tiny_qwen3_dir: Path, plugins: ModuleType,
                                                 prompts: str) -> None:  # fmt: skip
    args = _args(cluster, tiny_qwen3_dir, prompts, rollout_batch_size=3, apply_chat_template=True,
                 rollout_sample_hook_path=["rollout_e2e_plugins:tag_hook"])  # fmt: skip
    data = RolloutDataSource.from_args(args)
    groups = generate_rollout(args, 5, data)
    assert isinstance(groups, RolloutGroups) and [len(g) for g in groups] == [2, 2, 2]
    assert [s.index for g in groups for s in g] == list(range(6))
    tokenizer = load_tokenizer(str(tiny_qwen3_dir))
    for group in groups:
        assert len({s.group_index for s in group}) == 1
        for sample in group:
            _check_trainable(sample, 8)
            assert sample.prompt.startswith("<|im_start|>user\n") and sample.prompt.endswith("<|im_start|>assistant\n")
            assert sample.tokens[: sample.prompt_length] == tokenizer.encode(sample.prompt, add_special_tokens=False)
            assert sample.reward == float(sample.response_length % 2)
            assert sample.metadata["hooked"] == [5, False]
    metrics = groups.metrics
    assert metrics["rollout/num_samples"] == 6.0 and 0.0 <= metrics["rollout/truncated_ratio"] <= 1.0
    assert metrics["rollout/response_len/max"] <= 8 and "rollout/reward_std" in metrics


def test_group_rm_scores_each_group_once(cluster: str, tiny_qwen3_dir: Path, plugins: ModuleType,
                                         prompts: str) -> None:  # fmt: skip
    args = _args(cluster, tiny_qwen3_dir, prompts, n_samples_per_prompt=3, group_rm=True,
                 custom_rm_path="rollout_e2e_plugins:rank_in_group")  # fmt: skip
    groups = generate_rollout(args, 0, RolloutDataSource.from_args(args))
    assert [[s.reward for s in g] for g in groups] == [[0.0, 1.0, 2.0]] * 2



def test_reward_hub_scores_inside_the_rollout(cluster: str, tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    """--rm-type math grades in the grading process pool (math-verify needs a main thread); metadata overrides it."""
    rows = [{"input": "2 + 3 = ?", "label": "5"}, {"input": "say hi", "label": "hi", "metadata": {"rm_type": "f1"}}]
    args = _args(cluster, tiny_qwen3_dir, _write(tmp_path / "hub.jsonl", rows), custom_rm_path=None, rm_type="math")
    groups = generate_rollout(args, 0, RolloutDataSource.from_args(args))
    for group in groups:
        for sample in group:
            _check_trainable(sample, 8)
            assert isinstance(sample.reward, float) and 0.0 <= sample.reward <= 1.0
    assert groups[0][0].reward == 0.0  # a random model does not box the answer

def test_dynamic_sampling_refills_and_aborts_the_surplus(cluster: str, tiny_qwen3_dir: Path, plugins: ModuleType,
                                                         prompts: str) -> None:  # fmt: skip
    # Concurrency 1 x 2 engines = 2 samples at a time: groups run one after another, so the order is known.
    args = _args(cluster, tiny_qwen3_dir, prompts, over_sampling_batch_size=2, sglang_server_concurrency=1,
                 partial_rollout=True, dynamic_sampling_filter_path="rollout_e2e_plugins:keep_even_groups")  # fmt: skip
    data = RolloutDataSource.from_args(args)
    groups = generate_rollout(args, 0, data)
    assert [g[0].group_index for g in groups] == [0, 2]
    for sample in (s for g in groups for s in g):
        _check_trainable(sample, 8)
    m = groups.metrics
    assert m["rollout/dynamic_filter/submitted"] == 4.0  # 2, then a refill of 2 after group 1 was dropped
    assert m["rollout/dynamic_filter/drop_odd_group"] == 1.0
    assert m["rollout/dynamic_filter/aborted"] + m["rollout/dynamic_filter/surplus"] == 1.0
    assert m["rollout/abort_rounds"] >= 1.0
    (leftover,) = data.buffer  # group 3 went back to the buffer, tagged with the rollout that started it
    assert [s.group_index for s in leftover] == [3, 3]
    assert all(s.metadata["start_rollout_id"] == 0 for s in leftover)
    assert all(s.status is Status.ABORTED or s.status.is_finished for s in leftover)


def test_partial_rollout_resumes_a_sample_with_aligned_tokens(cluster: str, tiny_qwen3_dir: Path,
                                                              plugins: ModuleType, tmp_path: Path) -> None:  # fmt: skip
    data_path = _write(tmp_path / "partial.jsonl", [
        {"input": "short one", "label": "x", "metadata": {"budget": 4, "delay": 1.0}},
        {"input": "long one", "label": "y"},
    ])  # fmt: skip
    args = _args(cluster, tiny_qwen3_dir, data_path, rollout_batch_size=1, n_samples_per_prompt=1,
                 over_sampling_batch_size=2, partial_rollout=True, mask_offpolicy_in_partial_rollout=True,
                 custom_generate_function_path="rollout_e2e_plugins:budget_generate",
                 test_budget=1500)  # fmt: skip  # a budget within the tiny model's 2048 positions
    data = RolloutDataSource.from_args(args)
    first = generate_rollout(args, 0, data)
    assert [g[0].metadata.get("budget") for g in first] == [4]
    (buffered,) = data.buffer
    partial = buffered[0]
    assert partial.status is Status.ABORTED and partial.reward is None
    assert partial.response_length > 0, "the long sample should have been aborted mid-generation"
    partial.validate()
    old_len, old_tokens, old_lps = partial.response_length, list(partial.tokens), list(partial.rollout_log_probs)
    assert partial.metadata["start_rollout_id"] == 0

    args.over_sampling_batch_size, args.rollout_batch_size, args.test_budget = 1, 1, old_len + 5
    (group,) = generate_rollout(args, 1, data)
    (resumed,) = group
    assert resumed.index == partial.index and resumed.metadata["start_rollout_id"] == 0
    _check_trainable(resumed, old_len + 5)
    assert resumed.status is Status.TRUNCATED and resumed.response_length == old_len + 5
    assert resumed.tokens[: len(old_tokens)] == old_tokens and len(resumed.tokens) == len(old_tokens) + 5
    assert resumed.rollout_log_probs[:old_len] == old_lps
    assert resumed.loss_mask == [0] * old_len + [1] * 5  # tokens of the older policy are masked off


def test_abort_does_not_wait_for_slow_rewards(cluster: str, tiny_qwen3_dir: Path, plugins: ModuleType,
                                              prompts: str) -> None:  # fmt: skip
    args = _args(cluster, tiny_qwen3_dir, prompts, rollout_batch_size=1, n_samples_per_prompt=1,
                 over_sampling_batch_size=2, partial_rollout=True,
                 custom_rm_path="rollout_e2e_plugins:slow_for_odd_groups")  # fmt: skip
    data = RolloutDataSource.from_args(args)
    plugins.CANCELLED.clear()
    (group,) = generate_rollout(args, 0, data)
    assert group[0].group_index == 0 and group[0].reward == 1.0
    assert plugins.CANCELLED == [1]  # the slow reward call was cancelled, not awaited
    (buffered,) = data.buffer  # finished but unscored: next time it is scored, not regenerated
    assert buffered[0].status.is_finished and buffered[0].reward is None
    tokens = list(buffered[0].tokens)
    args.custom_rm_path, args.over_sampling_batch_size = "rollout_e2e_plugins:parity_reward", 1
    (again,) = generate_rollout(args, 1, data)
    assert again[0].index == buffered[0].index and again[0].tokens == tokens and again[0].reward is not None


def test_eval_metrics_per_dataset(cluster: str, tiny_qwen3_dir: Path, plugins: ModuleType, tmp_path: Path) -> None:
    small = _write(tmp_path / "small.jsonl", [{"input": f"q{i}", "label": "a"} for i in range(2)])
    other = _write(tmp_path / "other.jsonl", [{"input": "only", "label": "b"}])
    args = _args(cluster, tiny_qwen3_dir, small, eval_prompt_data=["small", small, "other", other],
                 n_samples_per_eval_prompt=4, eval_max_response_len=4, eval_temperature=0.5,
                 custom_rm_path="rollout_e2e_plugins:group_index_reward",
                 custom_generate_function_path="rollout_e2e_plugins:budget_generate", test_budget=None)  # fmt: skip
    plugins.EVAL_FLAGS.clear()
    out = generate_rollout(args, 3, None, evaluation=True)
    assert isinstance(out, EvalRolloutOutput) and list(out) == ["small", "other"]
    small_result = out["small"]
    assert len(small_result.samples) == 8 and len(out["other"].samples) == 4
    assert all(s.response_length == 4 for s in small_result.samples)  # eval max length, not the rollout's 8
    assert set(plugins.EVAL_FLAGS) == {True}
    m = out.metrics
    # prompt 0 always scores 0, prompt 1 always 1: mean 0.5 and pass@k 0.5 for every k
    assert m["eval/small"] == 0.5 and m["eval/small/pass@1"] == 0.5 and m["eval/small/pass@4"] == 0.5
    assert m["eval/other"] == 0.0 and m["eval/other/pass@2"] == 0.0
    assert m["eval/small-truncated_ratio"] == 1.0 and m["eval/small/response_len/mean"] == 4.0


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_search_r1_multi_turn_masks_align_token_by_token(cluster: str, tiny_qwen3_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Real engines write the model turns; the policy's decisions are scripted (a random model never searches)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import search_r1.generate as multi_turn
    from search_r1.prepare import make_row
    from search_r1.retrieval import default_search, format_observation

    script = [("search", "capital of France"), ("search", "Eiffel Tower"), ("answer", "Paris")]
    outputs = []

    async def recording_router(args: Any, input_ids: list[int], params: dict[str, Any]) -> Any:
        out = await real_router(args, input_ids, params)
        outputs.append((list(input_ids), out))
        return out

    real_router = multi_turn.call_router
    monkeypatch.setattr(multi_turn, "call_router", recording_router)
    monkeypatch.setattr(multi_turn, "parse_action", lambda text: script[len(outputs) - 1])
    data_path = _write(tmp_path / "search.jsonl", [make_row("What is the capital of France?", ["Paris"])])
    args = _args(cluster, tiny_qwen3_dir, data_path, input_key="prompt", rollout_batch_size=1, n_samples_per_prompt=1,
                 rollout_max_response_len=1000, search_r1_turn_tokens=6,
                 custom_generate_function_path="search_r1.generate:generate",
                 custom_rm_path="search_r1.reward:reward_func")  # fmt: skip
    ((sample,),) = generate_rollout(args, 0, RolloutDataSource.from_args(args))

    tokenizer = load_tokenizer(str(tiny_qwen3_dir))
    observations = [format_observation(default_search().search(q, multi_turn.TOP_K)) for _, q in script[:2]]
    obs_ids = [tokenizer.encode(o, add_special_tokens=False) for o in observations]
    turns = [list(out.output_ids) for _, out in outputs]
    assert len(turns) == 3 and all(0 < len(t) <= 6 for t in turns)
    expected_response = turns[0] + obs_ids[0] + turns[1] + obs_ids[1] + turns[2]
    prompt_ids = tokenizer.encode(sample.prompt, add_special_tokens=False)
    sample.validate()
    assert sample.tokens == prompt_ids + expected_response and sample.response_tokens == expected_response
    assert sample.loss_mask == ([1] * len(turns[0]) + [0] * len(obs_ids[0]) + [1] * len(turns[1])
                                + [0] * len(obs_ids[1]) + [1] * len(turns[2]))  # fmt: skip
    engine_lps = [list(out.output_log_probs) for _, out in outputs]
    assert sample.rollout_log_probs == (engine_lps[0] + [0.0] * len(obs_ids[0]) + engine_lps[1]
                                        + [0.0] * len(obs_ids[1]) + engine_lps[2])  # fmt: skip
    # Token in, token out: every turn continued exactly from the tokens the sample held at that point.
    assert [inputs for inputs, _ in outputs] == [
        prompt_ids,
        prompt_ids + turns[0] + obs_ids[0],
        prompt_ids + turns[0] + obs_ids[0] + turns[1] + obs_ids[1],
    ]
    texts = [out.text for _, out in outputs]
    assert sample.response == texts[0] + observations[0] + texts[1] + observations[1] + texts[2]
    assert sample.reward in (0.0, 1.0) and sample.status.is_finished
