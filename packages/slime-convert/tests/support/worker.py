"""One rank of a slime.convert test world (started by `launch.run_job`; not collected by pytest).

It installs the CPU shim (inside `main`, so that the helper process Megatron's checkpoint saver spawns, which
re-imports this file, stays light), then runs the job's steps in order, exactly as a user would run them:

- `["tool", "tools/x.py", [args...]]`: the script as `__main__` with those arguments (torchrun-style);
- `["cli", [args...]]`: `slime.convert.cli.main(args)`;
- `["call", "name", {kwargs}]`: a helper of `fixtures.py` (e.g. writing a legacy Megatron checkpoint).

With several ranks the worker starts the process group itself, as a program embedding the CLI would: the CLI then
leaves it up between steps (re-creating a gloo world on the same port at once races with the other ranks).
Each rank writes the exit status of every step to `<out>/status_rank<r>.json` and stops at the first failure.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path


def _step(step: list) -> int:
    kind = step[0]
    if kind == "tool":
        sys.argv = [step[1], *step[2]]
        try:
            runpy.run_path(step[1], run_name="__main__")
        except SystemExit as done:
            return int(done.code or 0)
        return 0
    if kind == "cli":
        from slime.convert.cli import main

        return main(step[1])
    import fixtures  # the worker's own folder is sys.path[0]

    getattr(fixtures, step[1])(**step[2])
    return 0


def main(job_file: str, out_dir: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "testing"))  # the repo's test kit
    from slime_testkit import megatron_cpu_shim

    megatron_cpu_shim.install()
    import torch

    torch.set_num_threads(1)  # the ranks share the test machine's cores
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo")
    steps = json.loads(Path(job_file).read_text())
    codes: list[int] = []
    for step in steps:
        codes.append(_step(step))
        if codes[-1] != 0:
            break
    rank = os.environ.get("RANK", "0")
    (Path(out_dir) / f"status_rank{rank}.json").write_text(json.dumps(codes))
    sys.exit(0 if len(codes) == len(steps) and not any(codes) else 1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
