"""Bad input end to end: `slime-train` stops with exit code 2 and one clear message before Ray or an engine starts.

Every case runs the real CLI entry (`slime.train.cli.main`) on the demo job with one mistake in it; the hosts
(Ray actors, engines, router, trainer) are replaced by a tripwire, so reaching them fails the test. Two cases run
the installed console script in a subprocess, to pin the real exit code. Component-level checks of the same
inputs live with their layers (slime.buffer's prompt data, slime.types' plugin resolution, slime.train's flag
validation, slime.convert's checkpoint checks); these prove the whole CLI surfaces them before any work starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slime.train import driver
from slime.train.cli import main
from slime.train.compose import compose_run
from slime.train.preflight import preflight
from slime.train.prompt_check import checked_data_source, skipped_rows
from slime.train.resolve import Environment

CPU = Environment(num_gpus=0, has_megatron=False, has_sglang=False)
GOOD = {"input": "write digits:", "label": "digits"}


@pytest.fixture(autouse=True)
def tripwire(monkeypatch):
    """Fail the test if a job gets as far as starting its hosts (Ray, engines, router, trainer)."""

    @contextlib.contextmanager
    def hosts(args):
        pytest.fail("the job started its hosts although its input is bad")
        yield

    monkeypatch.setattr(driver, "_hosts", hosts)


@pytest.fixture
def base(demo_files, job_flags, tmp_path):
    model, prompts = demo_files
    return lambda *extra, prompts=prompts, model=model: job_flags(
        model, prompts, tmp_path / "out", "--num-rollout", "1", "--no-ray", *extra
    )


def fails(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI; it must exit 2 with one `slime-train: error:` message holding every needle."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("slime-train: error:") == 1, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"
    return err


def write_rows(path: Path, rows: list[dict | bytes]) -> Path:
    with path.open("wb") as f:
        for row in rows:
            f.write(row if isinstance(row, bytes) else (json.dumps(row) + "\n").encode())
    return path


def model_copy(src: Path, dst: Path, *, config: dict | None = None, template: str | None = None) -> Path:
    shutil.copytree(src, dst)
    if config:
        (dst / "config.json").write_text(json.dumps(json.loads((dst / "config.json").read_text()) | config))
    if template is not None:
        (dst / "chat_template.jinja").write_text(template)
    return dst


FLAG_CASES = {
    "misspelled": (["--rollout-batch-szie", "2"], ["unknown flag '--rollout-batch-szie'", "'--rollout-batch-size'"]),
    "unknown": (["--frobnicate"], ["unknown flag '--frobnicate'", "slime-train --help"]),
    "bad_number": (["--lr", "fast"], ["argument --lr: invalid float value: 'fast'", "slime-train --help"]),
    "bad_choice": (["--rollout-engine", "gpu"], ["argument --rollout-engine: invalid choice: 'gpu'"]),
    "gbs_not_divisor": (["--global-batch-size", "3"], ["--global-batch-size 3 must divide", "= 8"]),
    "steps_not_divisor": (["--num-steps-per-rollout", "3"], ["--num-steps-per-rollout 3 must divide"]),
    "over_sampling": (["--over-sampling-batch-size", "1"], ["--over-sampling-batch-size (1) must be >="]),
    "engine_flag_typo": (["--sglang-max-running-requsts", "4"], ["--sglang-max-running-requsts is not in",
                                                                  "--sglang-max-running-requests"]),
    "launcher_flag": (["--sglang-port", "1234"], ["['--port'] are set by slime"]),
    "prompt_longer_than_context_flags": (["--rollout-max-prompt-len", "9", "--rollout-max-context-len", "8"],
                                         ["--rollout-max-prompt-len (9) must be <="]),
}  # fmt: skip


@pytest.mark.filterwarnings("ignore:--sglang-.* has no effect here")  # effects.py's note on the local engine
@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_bad_flags(case, base, capsys):
    extra, needles = FLAG_CASES[case]
    fails(capsys, base(*extra), *needles)


PLUGIN_CASES = {
    "rm_module_missing": (["--custom-rm-path", "no_such_module_xyz:rm"], ["--custom-rm-path", "does not import"]),
    "rm_attr_missing": (["--custom-rm-path", "slime.train.demo.task:nope"], ["has no attribute 'nope'"]),
    "rm_wrong_signature": (["--custom-rm-path", "slime.train.demo.task:score"], ["--custom-rm-path", "async def"]),
    "rollout_wrong_signature": (["--rollout-function-path", "json:dumps"], ["--rollout-function-path"]),
    "generate_missing": (["--custom-generate-function-path", "slime.train.demo.task:gen"],
                         ["--custom-generate-function-path", "has no attribute 'gen'"]),
    "filter_missing": (["--dynamic-sampling-filter-path", "nope_mod:f"], ["--dynamic-sampling-filter-path"]),
    "buffer_filter_missing": (["--buffer-filter-path", "nope_mod:f"], ["--buffer-filter-path"]),
    "loss_wrong_signature": (["--custom-loss-function-path", "json:dumps"], ["--custom-loss-function-path"]),
    "hook_missing": (["--rollout-sample-hook-path", "nope_mod:hook"], ["--rollout-sample-hook-path"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(PLUGIN_CASES))
def test_bad_plugins(case, base, capsys):
    extra, needles = PLUGIN_CASES[case]
    fails(capsys, base(*extra), *needles)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [(["--rm-type", "mathh"], "--rm-type is 'mathh'"), (["--rm-type", "remote_rm"], "needs --rm-url")],
)
def test_bad_reward_type(extra, needle, base, capsys):
    argv = base(*extra)
    at = argv.index("--custom-rm-path")  # without the demo's reward function, --rm-type is used
    fails(capsys, argv[:at] + argv[at + 2 :], needle)


DATA_CASES = {
    "missing_file": (None, ["does not exist"]),
    "malformed": ([GOOD, b'{"input": "a",, "label": 1}\n'], ["line 2, key 'input': malformed JSON", "Fix:"]),
    "truncated": ([GOOD, b'{"input": "unfinis'], ["line 2, key 'input': truncated JSON"]),
    "not_utf8": ([GOOD, b'{"input": "caf\xe9", "label": "digits"}\n'], ["line 2", "not valid UTF-8"]),
    "missing_label": ([GOOD, {"input": "write digits:"}], ["line 2, key 'label': missing key 'label'"]),
    "wrong_type": ([{"input": 42, "label": "digits"}], ["line 1, key 'input': wrong type", "got int"]),
    "empty": ([], ["no usable prompt rows", "Fix: point --prompt-data"]),
    "too_long_for_model": ([GOOD, {"input": "x" * 400, "label": "digits"}],
                           ["prompt #2", "longer than the context limit 255",
                            "max_position_embeddings (256) - 1", "--skip-bad-rows"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_prompt_data(case, base, capsys, tmp_path):
    rows, needles = DATA_CASES[case]
    path = tmp_path / "missing.jsonl" if rows is None else write_rows(tmp_path / "p.jsonl", rows)
    fails(capsys, base(prompts=path), *needles)


def test_prompt_longer_than_max_prompt_len(base, capsys):
    fails(capsys, base("--rollout-max-prompt-len", "12"), "prompt #1", "longer than the context limit 12",
          "(--rollout-max-prompt-len)", "shorten or drop the row")  # fmt: skip


FAILING_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('system turns are not supported') }}"
    "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SYSTEM_ROW = {"input": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
              "label": "digits"}  # fmt: skip


def test_chat_template_that_fails(base, capsys, demo_files, tmp_path):
    model = model_copy(demo_files[0], tmp_path / "model", template=FAILING_TEMPLATE)
    prompts = write_rows(tmp_path / "p.jsonl", [GOOD, SYSTEM_ROW])
    fails(capsys, base(model=model, prompts=prompts), "prompt #2", "chat template", "system turns are not supported",
          "--apply-chat-template")  # fmt: skip


def test_checkpoint_whose_config_contradicts_its_weights(base, capsys, demo_files, tmp_path):
    model = model_copy(demo_files[0], tmp_path / "model", config={"intermediate_size": 96})
    fails(capsys, base(model=model), "--hf-checkpoint", "model.layers.0.mlp.gate_proj.weight: checkpoint (128, 64), "
          "config implies (96, 64)", "Fix: point --hf-checkpoint")  # fmt: skip


def test_checkpoint_without_weights_or_config(base, capsys, demo_files, tmp_path):
    empty = tmp_path / "empty_model"
    empty.mkdir()
    fails(capsys, base(model=empty), "--hf-checkpoint", "no config.json")
    no_weights = model_copy(demo_files[0], tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    fails(capsys, base(model=no_weights), "holds no *.safetensors weights")


def _saved_run(root: Path, rollout_id: int, dataset_size: int, *, make_iter: bool) -> Path:
    from slime.train.run_state import save_run_state

    if make_iter:
        (root / f"iter_{rollout_id:07d}").mkdir(parents=True)
    state = {"format": "slime.buffer.RolloutDataSource/1", "epoch": 0, "cursor": 2, "seed": 42, "shuffle": False,
             "sample_index": 8, "group_index": 2, "dataset_size": dataset_size, "n_samples_per_prompt": 4,
             "buffer": []}  # fmt: skip
    save_run_state(root, rollout_id, {"data_source": state})
    return root


def test_resume_from_a_damaged_or_mismatched_checkpoint(base, capsys, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "latest_rollout_state.txt").write_text("abc\n")
    fails(capsys, base("--load", str(damaged)), "holds 'abc', not a rollout id")
    missing = _saved_run(tmp_path / "missing", 3, 32, make_iter=False)
    fails(capsys, base("--load", str(missing)), "iter_0000003 is", "missing", "Fix: restore that folder")
    other_data = _saved_run(tmp_path / "other", 1, 1000, make_iter=True)
    fails(capsys, base("--load", str(other_data)), "saved with 1000 prompts but the data now has 32",
          "resume with the same --prompt-data")  # fmt: skip


def test_skip_bad_rows_counts_every_skipped_row(base, demo_files, tmp_path):
    """With --skip-bad-rows nothing stops the job and nothing is dropped silently: each bad row is counted."""
    from slime.train.driver import parse_job_args

    model = model_copy(demo_files[0], tmp_path / "model", template=FAILING_TEMPLATE)
    rows = [GOOD, b"{bad json\n", {"input": 7, "label": "digits"}, SYSTEM_ROW, {"input": "y" * 400, "label": "d"},
            {"input": "write letters:", "label": "letters"}]  # fmt: skip
    prompts = write_rows(tmp_path / "p.jsonl", rows)
    args, _ = parse_job_args(base("--skip-bad-rows", model=model, prompts=prompts), async_loop=False, env=CPU)
    preflight(compose_run(args))  # passes
    source = checked_data_source(args)
    assert len(source) == 2 and skipped_rows(source) == 4
    assert [s.label for s in source.dataset] == ["digits", "letters"]
    only_bad = write_rows(tmp_path / "bad.jsonl", rows[1:5])
    args, _ = parse_job_args(base("--skip-bad-rows", model=model, prompts=only_bad), async_loop=False, env=CPU)
    with pytest.raises(ValueError, match="no usable prompt rows - all 4 rows were bad"):
        preflight(compose_run(args))


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("slime-train")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from slime.train.cli import main; "
                                                  "raise SystemExit(main())"]  # fmt: skip


def test_console_script_exits_2_before_starting_anything(base, tmp_path):
    argv = base(prompts=write_rows(tmp_path / "p.jsonl", [GOOD, b"{oops\n"]))
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1"}  # a Ray start would fail loudly rather than hang
    done = subprocess.run([*_console_script(), *argv], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("slime-train: error:") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "p.jsonl line 2, key 'input': malformed JSON" in done.stderr
    assert not (tmp_path / "out" / "metrics.jsonl").exists()  # nothing started, nothing written
