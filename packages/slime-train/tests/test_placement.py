"""slime's placement layouts as a pure function."""

from __future__ import annotations

import pytest

from slime.train.arguments import parse_args
from slime.train.placement import plan_placement
from slime.train.resolve import Environment, resolve
from slime.types import ConfigError

GPU = Environment(num_gpus=8, has_megatron=True, has_sglang=True)


def _args(*extra):
    return resolve(
        parse_args(["--rollout-batch-size", "4", "--num-rollout", "1", "--hf-checkpoint", "m", *extra]).args, GPU
    )


def test_disaggregated_rollout_follows_actor():
    plan = plan_placement(_args("--actor-num-gpus-per-node", "4", "--rollout-num-gpus", "4"), num_gpus=8)
    assert plan.num_bundles == 8 and plan.actor_bundles == (0, 1, 2, 3) and plan.rollout_bundles == (4, 5, 6, 7)


def test_colocate_shares_bundles():
    plan = plan_placement(_args("--actor-num-gpus-per-node", "8", "--colocate"), num_gpus=8)
    assert plan.num_bundles == 8 and plan.actor_bundles == plan.rollout_bundles


def test_too_many_gpus_is_a_clear_error():
    with pytest.raises(ConfigError, match="needs 12 GPUs"):
        plan_placement(_args("--actor-num-gpus-per-node", "8", "--rollout-num-gpus", "4"), num_gpus=8)


def test_cpu_plan_uses_small_cpu_bundles():
    plan = plan_placement(_args("--actor-num-gpus-per-node", "1"), num_gpus=0)
    assert not plan.use_gpu and plan.bundle_specs() == [{"CPU": 0.25}]


def test_mixed_colocate_with_more_rollout_gpus_than_actor():
    """Colocate where rollout uses more GPUs than training: the engines share the actor's GPUs and take the rest."""
    plan = plan_placement(_args("--actor-num-gpus-per-node", "4", "--rollout-num-gpus", "8", "--colocate"), num_gpus=8)
    assert plan.num_bundles == 8 and plan.actor_bundles == (0, 1, 2, 3) and plan.rollout_bundles == tuple(range(8))
    shared = set(plan.actor_bundles) & set(plan.rollout_bundles)
    assert shared == {0, 1, 2, 3}


def test_mixed_colocate_with_fewer_rollout_gpus_than_actor():
    plan = plan_placement(_args("--actor-num-gpus-per-node", "8", "--rollout-num-gpus", "4", "--colocate"), num_gpus=8)
    assert plan.num_bundles == 8 and plan.actor_bundles == tuple(range(8)) and plan.rollout_bundles == (0, 1, 2, 3)


def test_multi_node_actor_layout():
    """Two actor nodes of 4 GPUs plus 4 dedicated rollout GPUs: 12 bundles, rollout after the actor's."""
    plan = plan_placement(
        _args("--actor-num-nodes", "2", "--actor-num-gpus-per-node", "4", "--rollout-num-gpus", "4"), num_gpus=16
    )
    assert plan.num_bundles == 12 and plan.actor_bundles == tuple(range(8)) and plan.rollout_bundles == (8, 9, 10, 11)
    assert all(spec == {"CPU": 1.0, "GPU": 1.0} for spec in plan.bundle_specs())
