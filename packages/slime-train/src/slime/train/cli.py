"""The `slime-train` console script and the `train.py` / `train_async.py` entry points.

`slime-train demo ...` runs the embedded CPU demo; `slime-train --flags ...` (or `python train.py
--flags ...`) parses slime's flags, validates and resolves them, and runs the synchronous loop;
`train_async.py` runs the asynchronous loop. Errors in flags print one message and exit with code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from slime.train.metrics import FanOut
from slime.types import SlimeError


def run_training(argv: Sequence[str], *, async_loop: bool = False) -> FanOut:
    """Parse, validate, resolve, and run one training job; return the metrics history."""
    from slime.train.driver import run_job  # heavy imports (torch, ray) only when a job really runs

    return run_job(argv, async_loop=async_loop)


def main(argv: Sequence[str] | None = None, *, async_loop: bool = False) -> int:
    """Console entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from slime.train.actors import set_ray_env_defaults

    set_ray_env_defaults()  # before any import that may pull in ray
    try:
        if argv[:1] == ["demo"]:
            from slime.train.demo.recipe import run_demo

            return run_demo(argv[1:])
        run_training(argv, async_loop=async_loop)
        return 0
    except SlimeError as exc:
        print(f"slime-train: error: {exc}", file=sys.stderr)
        return 2


def main_async(argv: Sequence[str] | None = None) -> int:
    """Entry point of `train_async.py`."""
    return main(argv, async_loop=True)
