"""Placement: how many bundles the run needs and which belong to training and to rollout; the Ray group.

`plan_placement` is slime's layout as a pure function (colocate: both sides start at bundle 0 and the
group has max(actor, rollout) bundles; disaggregated: rollout bundles follow the actor's). Without GPUs,
bundles are small CPU shares so that the whole loop fits a laptop. `create_placement_group` is the only
Ray call here; it always waits with a timeout (an infeasible group otherwise hangs forever).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from slime.types import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PlacementPlan:
    """Bundle layout of one run."""

    num_bundles: int
    actor_bundles: tuple[int, ...]
    rollout_bundles: tuple[int, ...]
    use_gpu: bool
    cpu_per_bundle: float
    """CPU share of each bundle (1 with GPUs, as slime; a fraction on CPU-only machines)."""

    def bundle_specs(self) -> list[dict[str, float]]:
        """Ray bundle dicts, in bundle order."""
        spec = {"CPU": self.cpu_per_bundle} | ({"GPU": 1.0} if self.use_gpu else {})
        return [dict(spec) for _ in range(self.num_bundles)]


def plan_placement(args: argparse.Namespace, *, num_gpus: int, cpu_share: float = 0.25) -> PlacementPlan:
    """Compute the layout from the cluster flags (resolved `args`) and the GPUs Ray sees.

    Raises:
        ConfigError: more GPUs asked for than exist, naming the flags to change.
    """
    actor = args.actor_num_nodes * args.actor_num_gpus_per_node
    use_gpu = num_gpus > 0
    if not use_gpu:
        # CPU: one trainer process per "GPU" of the actor is what the user asked for; engines are local
        # servers started by the rollout manager, so only the trainer ranks need bundles.
        actor = max(1, actor if actor <= 2 else 1)
        return PlacementPlan(
            num_bundles=actor,
            actor_bundles=tuple(range(actor)),
            rollout_bundles=(),
            use_gpu=False,
            cpu_per_bundle=cpu_share,
        )
    rollout = args.rollout_num_gpus if args.rollout_num_gpus is not None else 0
    if args.debug_train_only:
        total, offset = actor, 0
    elif args.debug_rollout_only:
        total, offset, actor = rollout, 0, 0
    elif args.colocate:
        total, offset = max(actor, rollout), 0
    else:
        total, offset = actor + rollout, actor
    if total > num_gpus:
        raise ConfigError(
            f"the run needs {total} GPUs (actor {actor} via --actor-num-nodes x --actor-num-gpus-per-node, rollout "
            f"{rollout} via --rollout-num-gpus, colocate={args.colocate}) but the cluster has {num_gpus}."
        )
    return PlacementPlan(
        num_bundles=total,
        actor_bundles=tuple(range(actor)),
        rollout_bundles=tuple(range(offset, offset + rollout)),
        use_gpu=True,
        cpu_per_bundle=1.0,
    )


def create_placement_group(plan: PlacementPlan, *, timeout_s: float = 120.0) -> Any:
    """Create and wait for a PACK placement group; raise a clear error instead of hanging."""
    import ray
    from ray.util.placement_group import placement_group

    group = placement_group(plan.bundle_specs(), strategy="PACK")
    if not group.wait(timeout_seconds=timeout_s):
        ray.util.remove_placement_group(group)
        raise ConfigError(
            f"Ray could not place {plan.num_bundles} bundles {plan.bundle_specs()[:1]} within {timeout_s:.0f} s; "
            f"available resources: {ray.available_resources()}. Lower the GPU/CPU counts or add nodes."
        )
    return group
