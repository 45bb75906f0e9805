"""The pytest command line: xdist workers unless the user chose, a private --basetemp, exit 5 handling."""

from __future__ import annotations

from pathlib import Path

import pytest
from runner import pytest_exec


@pytest.mark.parametrize("args", [["-n", "4"], ["-n0"], ["--numprocesses=3"], ["-p", "no:xdist"], ["--dist", "load"]])
def test_user_choice_of_workers_wins(args):
    cmd = pytest_exec.command(["a/tests"], args, python="py")
    assert cmd.count("-n") == args.count("-n")


def test_default_command_shares_two_workers_and_a_private_basetemp():
    cmd = pytest_exec.command(["a/tests", "b/tests"], ["-q"], python="py", scratch=Path("scratch"))
    assert cmd[:5] == ["py", "-m", "pytest", "a/tests", "b/tests"]
    assert cmd[5:7] == ["-n", "2"]
    assert cmd[7] == f"--basetemp={Path('scratch') / 'basetemp'}"
    assert cmd[-1] == "-q"


def test_no_xdist_no_workers():
    assert "-n" not in pytest_exec.command(["a/tests"], [], python="py", xdist=False)


def test_exit_5_passes_with_a_warning(capsys):
    assert pytest_exec.passed(5, "test")
    assert "collected no tests (exit 5)" in capsys.readouterr().out
    assert pytest_exec.passed(0, "test")
    assert not pytest_exec.passed(1, "test")
    assert not pytest_exec.passed(2, "test")
