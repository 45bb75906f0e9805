"""One rank of a slime.megatron test world (started by `launch.start_scenario`; not collected by pytest).

Installs the CPU shim before anything imports megatron, runs the named scenario, has rank 0 write its result dict
to `<out_dir>/result.pt`, and leaves `rank<r>.done` (or `rank<r>.failed` with the traceback) for the waiters.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "testing"))  # the repo's test kit
from slime_testkit import megatron_cpu_shim  # noqa: E402

megatron_cpu_shim.install()

import scenarios  # noqa: E402
import torch  # noqa: E402


def main(job_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # the ranks share the test machine's cores
    job = pickle.loads(Path(job_file).read_bytes())
    result = getattr(scenarios, job["scenario"])(out_dir=Path(out_dir), **job["params"])
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        tmp = Path(out_dir) / "result.pt.tmp"
        torch.save(result, tmp)
        tmp.rename(Path(out_dir) / "result.pt")
    from slime.megatron import _megatron_globals

    _megatron_globals.destroy()


if __name__ == "__main__":
    rank = os.environ.get("RANK", "0")
    try:
        main(sys.argv[1], sys.argv[2])
    except BaseException:
        (Path(sys.argv[2]) / f"rank{rank}.failed").write_text(traceback.format_exc())
        raise
    (Path(sys.argv[2]) / f"rank{rank}.done").write_text("ok")
