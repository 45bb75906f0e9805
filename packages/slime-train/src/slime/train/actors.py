"""Ray actors that only remote the hosts: `RolloutHost` and one `TrainerHost` per trainer rank.

Starts (or joins) the Ray cluster, creates the placement group from `placement.plan_placement`, and puts
each trainer rank in its bundle. Ray never leaks below slime.train; the hosts run the same without it.
A local cluster binds loopback only and has token auth off, which is what a single machine needs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from slime.train.handles import Group, RayHandle
from slime.train.placement import create_placement_group, plan_placement
from slime.train.run_config import RunConfig

RAY_ENV_DEFAULTS = {
    # Bind GCS, raylet and workers to 127.0.0.1 (Ray 2.60 otherwise advertises the machine's address).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Ray 2.60 writes an auth token to $HOME and requires it by default; a local cluster needs neither.
    "RAY_AUTH_MODE": "disabled",
    # `uv run` drivers would otherwise make Ray package the working tree and build a venv per worker.
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
}


_START_ATTEMPTS = 3


def set_ray_env_defaults() -> None:
    """Apply `RAY_ENV_DEFAULTS` (user values win). Must run before anything imports ray."""
    for key, value in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def init_ray(args: argparse.Namespace) -> None:
    """Join the cluster named by RAY_ADDRESS (`ray job submit`, `ray start`) or start a loopback-only one."""
    set_ray_env_defaults()
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
        return
    for attempt in range(1, _START_ATTEMPTS + 1):
        try:
            ray.init(num_cpus=args.ray_num_cpus, include_dashboard=False, log_to_driver=True)
            return
        except Exception as exc:  # Ray raises a bare Exception when its raylet misses a fixed 30 s start window
            if "timed out during startup" not in str(exc) or attempt == _START_ATTEMPTS:
                raise
            ray.shutdown()
            print(f"[slime] Ray did not start within its 30 s window (machine busy?); retry {attempt}", flush=True)


def _gpu_count() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def _rendezvous_address() -> tuple[str, int]:
    """This node's IP and a free port on it: where the trainer's rank 0 listens for the other ranks."""
    import socket

    import ray

    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    return ray.util.get_node_ip_address(), port


def _rollout_actor_class(host: type) -> type:
    """`host` with `progress` served in its own concurrency group: it answers while `generate` runs (every other
    method stays serial, as the loops expect)."""
    import ray

    class RolloutActor(host):  # type: ignore[misc, valid-type]  # a class built at run time
        @ray.method(concurrency_group="progress")
        def progress(self) -> dict[str, int]:
            return super().progress()

    return RolloutActor


def start_ray_hosts(config: RunConfig) -> tuple[RayHandle, Group]:
    """Create the placement group and the actors; return their handles."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from slime.train.rollout_host import RolloutHost
    from slime.train.trainer_host import TrainerHost

    args = config.args
    init_ray(args)
    plan = plan_placement(args, num_gpus=_gpu_count())
    group = create_placement_group(plan)
    env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith(("RAY_", "OMP_", "TOKENIZERS_"))}}
    rollout_actor: Any = ray.remote(num_cpus=0.1, runtime_env=env, concurrency_groups={"progress": 1})(
        _rollout_actor_class(RolloutHost)
    ).remote(config)
    world = len(plan.actor_bundles)
    in_bundle = [
        PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=bundle)
        for bundle in plan.actor_bundles
    ]
    # Rank 0's node and a free port there, found by a task in rank 0's bundle (slime asks its rank-0 actor).
    master = ray.get(ray.remote(num_cpus=0)(_rendezvous_address).options(scheduling_strategy=in_bundle[0]).remote())
    trainer_cls: Any = ray.remote(num_cpus=plan.cpu_per_bundle, num_gpus=0.4 if plan.use_gpu else 0, runtime_env=env)(
        TrainerHost
    )
    ranks = [
        trainer_cls.options(scheduling_strategy=strategy).remote(config, rank=rank, world_size=world, master=master)
        for rank, strategy in enumerate(in_bundle)
    ]
    return RayHandle(rollout_actor), Group([RayHandle(r) for r in ranks])
