"""Every validation rule, with the text of its error; and the derived defaults of `resolve`."""

from __future__ import annotations

import pytest

from slime.train.arguments import parse_args
from slime.train.resolve import Environment, resolve
from slime.train.validation import validate
from slime.types import ConfigError

BASE = ["--rollout-batch-size", "4", "--n-samples-per-prompt", "2", "--num-rollout", "3", "--hf-checkpoint", "m"]
CPU = Environment(num_gpus=0, has_megatron=True, has_sglang=False)


def _check(extra):
    validate(parse_args([*BASE, *extra]).args)


def test_base_is_valid():
    _check([])


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--rollout-temperature", "0"], "--rollout-temperature must be > 0"),
        (["--use-kl-loss", "--hf-checkpoint", ""], "need a reference model"),
        (["--eval-interval", "2"], "--eval-interval needs eval data"),
        (["--save-interval", "2"], "--save-interval needs --save"),
        (["--kl-coef", "0.1", "--kl-loss-coef", "0.1"], "cannot both be non-zero"),
        (["--advantage-estimator", "reinforce_plus_plus"], "requires --normalize-advantages"),
        (["--advantage-estimator", "reinforce_plus_plus_baseline"], "requires --normalize-advantages"),
        (["--use-rollout-logprobs", "--use-tis"], "excludes --use-tis"),
        (["--get-mismatch-metrics"], "requires --custom-tis-function-path"),
        (["--use-dynamic-batch-size"], "requires --max-tokens-per-gpu"),
        (["--balance-by-flops"], "requires --use-dynamic-batch-size"),
        (["--save-debug-rollout-data", "x", "--save-debug-train-data", "x"], "must be different paths"),
        (["--debug-rollout-only", "--debug-train-only"], "excludes --debug-train-only"),
        (["--num-steps-per-rollout", "3"], "must divide rollout_batch_size x n_samples_per_prompt = 8"),
        (["--global-batch-size", "3"], "--global-batch-size 3 must divide"),
        (["--global-batch-size", "2", "--num-steps-per-rollout", "2"], "they must be equal"),
        (["--over-sampling-batch-size", "2"], "must be >= --rollout-batch-size"),
        (["--rollout-max-context-len", "8", "--rollout-max-prompt-len", "9"], "must be <= --rollout-max-context-len"),
        (["--only-train-params-name-list", "a", "--freeze-params-name-list", "b"], "mutually exclusive"),
        (["--update-weight-transport", "disk"], "requires --update-weight-disk-dir"),
        (
            ["--update-weight-mode", "delta", "--update-weight-transport", "disk", "--update-weight-disk-dir", "d"],
            "requires --update-weight-local-checkpoint-dir",
        ),
        (
            [
                "--update-weight-mode",
                "delta",
                "--update-weight-transport",
                "disk",
                "--update-weight-disk-dir",
                "d",
                "--colocate",
            ],
            "no --colocate",
        ),
        (["--use-opd"], "--use-opd requires --opd-type: sglang"),
        (["--use-opd", "--opd-type", "megatron"], "--opd-type megatron requires --opd-teacher-load DIR"),
        (
            ["--use-opd", "--opd-type", "megatron", "--opd-teacher-load", "/no/such/teacher"],
            "--opd-teacher-load '/no/such/teacher' does not exist",
        ),
        (
            ["--use-opd", "--opd-type", "sglang", "--opd-teacher-load", "t"],
            "--opd-teacher-load 't' is set with --opd-type sglang",
        ),
        (["--opd-teacher-load", "t"], "--opd-teacher-load 't' is set but --use-opd is not"),
    ],
)
def test_rule_fires_with_its_message(extra, needle):
    with pytest.raises(ConfigError, match=None) as info:
        _check(extra)
    assert needle in str(info.value)


def test_on_policy_distillation_settings_that_pass(tmp_path):
    _check(["--use-opd", "--opd-type", "sglang", "--opd-kl-coef", "0.5"])
    _check(["--use-opd", "--opd-type", "megatron", "--opd-teacher-load", str(tmp_path)])
    _check(["--opd-type", "sglang"])  # slime too: a type without --use-opd changes nothing


def test_all_problems_reported_together():
    with pytest.raises(ConfigError) as info:
        _check(["--rollout-temperature", "0", "--kl-coef", "0.1", "--kl-loss-coef", "0.1"])
    assert str(info.value).count("\n  - ") == 2


def test_missing_required_and_length():
    with pytest.raises(ConfigError, match="--rollout-batch-size is required"):
        validate(parse_args(["--num-rollout", "1"]).args)
    with pytest.raises(ConfigError, match="set the run length"):
        validate(parse_args(["--rollout-batch-size", "1"]).args)
    with pytest.raises(ConfigError, match="--num-epoch needs --prompt-data"):
        validate(parse_args(["--rollout-batch-size", "1", "--num-epoch", "1"]).args)


def test_resolve_derives_without_mutating():
    parsed = parse_args([*BASE, "--eps-clip", "0.3", "--num-steps-per-rollout", "2", "--colocate"]).args
    before = dict(vars(parsed))
    args = resolve(parsed, CPU)
    assert vars(parsed) == before
    assert args.eps_clip_high == 0.3 and args.global_batch_size == 4 and args.num_steps_per_rollout == 2
    assert args.over_sampling_batch_size == 4 and args.offload_train and args.offload_rollout
    assert args.train_backend == "fsdp" and args.rollout_engine == "local" and args.rollout_num_gpus == 8


def test_resolve_single_sample_groups_turn_off_std_normalisation():
    args = resolve(parse_args(["--rollout-batch-size", "4", "--num-rollout", "1"]).args, CPU)
    assert args.grpo_std_normalization is False and args.global_batch_size == 4 and args.num_steps_per_rollout == 1


def test_resolve_backend_choice():
    gpu = Environment(num_gpus=8, has_megatron=True, has_sglang=True)
    assert resolve(parse_args(BASE).args, gpu).train_backend == "megatron"
    assert resolve(parse_args(BASE).args, gpu).rollout_engine == "sglang"
    with pytest.raises(ConfigError, match="slime-sglang\\[engine\\]"):
        resolve(parse_args([*BASE, "--rollout-engine", "sglang"]).args, CPU)


def test_ineffective_flags_warn_once(recwarn):
    import warnings

    from slime.train import effects
    from slime.train.driver import parse_job_args

    effects._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            parse_job_args(
                [*BASE, "--http-proxy", "x", "--sglang-mem-fraction-static", "0.5"], async_loop=False, env=CPU
            )
    texts = [str(w.message) for w in caught]
    assert sum("--http-proxy has no effect here" in t for t in texts) == 1
    assert sum("--sglang-mem-fraction-static has no effect here" in t for t in texts) == 1


@pytest.mark.parametrize("backend", ["fsdp", "megatron"])
def test_megatron_only_flags_warn_under_fsdp_only(backend):
    import warnings

    from slime.train import effects
    from slime.train.driver import parse_job_args

    effects._warned.clear()
    flags = ["--train-backend", backend, "--data-pad-size-multiplier", "64", "--train-cuda-graphs"]
    flags += ["--use-dynamic-batch-size", "--max-tokens-per-gpu", "512"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parse_job_args([*BASE, *flags], async_loop=False, env=CPU)
    texts = [str(w.message) for w in caught]
    warned = [
        f
        for f in ("--data-pad-size-multiplier", "--train-cuda-graphs")
        if any(f"{f} has no effect" in t for t in texts)
    ]
    assert warned == (["--data-pad-size-multiplier", "--train-cuda-graphs"] if backend == "fsdp" else [])


def test_cuda_graphs_with_colocate_warn_of_the_recapture():
    import warnings

    from slime.train import effects
    from slime.train.driver import parse_job_args

    effects._warned.clear()
    flags = ["--train-backend", "megatron", "--train-cuda-graphs", "--use-dynamic-batch-size", "--max-tokens-per-gpu"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parse_job_args([*BASE, *flags, "512", "--colocate"], async_loop=False, env=CPU)
    texts = [str(w.message) for w in caught]
    assert any("--train-cuda-graphs with --colocate: every offload moves the weights" in t for t in texts), texts
