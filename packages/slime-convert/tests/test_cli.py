"""The console script and the seeds' tool scripts: subcommands, flags, and the `check` report."""

from __future__ import annotations

import runpy
import sys

import pytest
from slime_convert_testsupport.compare import assert_bit_exact
from slime_convert_testsupport.launch import REPO_ROOT

from slime.convert import main
from slime.convert.cli import build_parser

COMMANDS = ("hf-to-torch-dist", "torch-dist-to-hf", "megatron-to-hf", "hf-to-dcp", "dcp-to-hf", "hf-to-fp8", "check")


def test_every_subcommand_has_help(capsys):
    for command in COMMANDS:
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
    assert all(command in build_parser().format_help() for command in COMMANDS)
    with pytest.raises(SystemExit):
        main(["torch-dist-to-hf", "--input-dir", "x", "--output-dir", "y", "--origin-hf-dir", "z", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_seeds_tool_script_with_the_seeds_flags(megatron_single, models, tmp_path, monkeypatch):
    out = tmp_path / "Qwen3-iter_xxx"
    script = str(REPO_ROOT / "tools" / "convert_torch_dist_to_hf.py")
    argv = ["--input-dir", str(megatron_single / "qwen3_td" / "release"), "--output-dir", str(out)]
    monkeypatch.setattr(sys, "argv", [script, *argv, "--origin-hf-dir", str(models["qwen3"]), "--vocab-size", "256"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    assert done.value.code == 0
    assert_bit_exact(out, models["qwen3"])


def test_check_reports_what_matches(megatron_single, fsdp_checkpoints, models, capsys):
    assert (
        main(["check", "--hf-checkpoint", str(models["qwen3"]), "--input-dir", str(megatron_single / "qwen3_td")]) == 0
    )
    out = capsys.readouterr().out
    assert "ok: HF checkpoint" in out and "torch_dist checkpoint" in out and "padded 256" in out
    argv = ["check", "--hf-checkpoint", str(models["llama"]), "--input-dir", str(fsdp_checkpoints["llama"])]
    assert main([*argv, "--num-layers", "2"]) == 0
    out = capsys.readouterr().out
    assert "slime.fsdp checkpoint" in out and "Megatron flags agree" in out
