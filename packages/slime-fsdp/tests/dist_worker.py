"""One rank of a multi-process slime.fsdp test (launched by `conftest.launch_world`, not collected by pytest).

Reads a pickled job: a list of scenarios {"config": FSDPConfig, "batches": [RolloutBatch, ...]}. For each,
in the same processes (imports are the slow part): actor log-probs of the first batch, `train()` on each
batch in turn, the exported full weights, and a checkpoint when the config has `save`. Rank 0 writes the
list of results to `<out_dir>/result.pt`.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from slime.fsdp import DistInfo, FSDPPolicy, init_distributed


def run_scenario(scenario: dict[str, Any], info: DistInfo) -> dict[str, Any]:
    config, batches = scenario["config"], scenario["batches"]
    policy = FSDPPolicy(config, info)
    result: dict[str, Any] = {"world_size": info.world_size}
    result["log_probs"] = policy.compute_log_probs(batches[0])
    if policy.critic is not None:
        result["values"] = policy.compute_values(batches[0])
    result["metrics"] = [dict(policy.train(i, batch)) for i, batch in enumerate(batches)]
    result["weights"] = {name: tensor.clone() for name, tensor in policy.export_weights()}
    if policy.critic is not None:
        result["critic_weights"] = policy.critic.full_weights()
    if config.save is not None:
        result["checkpoint"] = policy.save_checkpoint(len(batches) - 1)
    return result


def main(job_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # the ranks share the test machine's cores
    scenarios = pickle.loads(Path(job_file).read_bytes())
    info = init_distributed("cpu")
    results = [run_scenario(s, info) for s in scenarios]
    if info.rank == 0:
        torch.save(results, Path(out_dir) / "result.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
