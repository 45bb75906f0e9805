"""`FSDPCritic`: the PPO critic of one rank, a `ValueModel` sharded like the actor with its own AdamW and schedule.

It computes the values of a rollout batch (before advantages: GAE needs them) and takes one value-loss step per
actor step over the same packed micro-batches (slime.loss's clipped value loss around the values computed before
the call, against the GAE returns). It owns its offload/onload and hands its model and optimizer to the DCP
checkpoint (part `critic`). It never touches the actor and does not compute advantages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor

from slime.fsdp.config import FSDPConfig
from slime.fsdp.distributed import DistInfo
from slime.fsdp.forward_only import forward_only
from slime.fsdp.model import reshard, trainable_parameters
from slime.fsdp.offload import Offloader
from slime.fsdp.optimizer import build_optimizer, build_scheduler
from slime.fsdp.packed_batch import PackedBatch
from slime.fsdp.rollout_data import RolloutTensors
from slime.fsdp.train_step import StepContext, value_train_step
from slime.fsdp.value_model import build_value_model, forward_values
from slime.loss.plugins import LossPlugins
from slime.types import RolloutBatch


class FSDPCritic:
    """The value model, its optimizer (`critic_lr`, `critic_lr_warmup_iters`) and its offloader."""

    def __init__(self, config: FSDPConfig, mesh: DeviceMesh, info: DistInfo) -> None:
        self.config = config
        self.info = info
        self.model = build_value_model(config, mesh, info.device)
        self.params = trainable_parameters(self.model)
        optimizer_config = config.critic_optimizer
        self.optimizer = build_optimizer(self.params, optimizer_config)
        self.scheduler = build_scheduler(self.optimizer, optimizer_config)
        self.offloader = Offloader(self.model, self.optimizer)

    def compute_values(self, batch: RolloutBatch, plan: Sequence[Sequence[int]]) -> list[Tensor]:
        """Per-sample [R_i] float32 CPU values of the response tokens; `plan` is this rank's micro-batches.

        Collective: every rank calls it with the same batch and gets the same result.
        """
        return forward_only(self.model, batch, plan, self.info, lambda model, mb: forward_values(model, mb).values)

    def train_step(
        self,
        micro_batches: Sequence[PackedBatch],
        data: RolloutTensors,
        step_samples: Sequence[int],
        plugins: LossPlugins,
    ) -> dict[str, float]:
        """One value-loss optimizer step (collective); metrics as `train_step.value_train_step` returns them."""
        ctx = StepContext(
            model=self.model, optimizer=self.optimizer, scheduler=self.scheduler, params=self.params,
            loss_config=self.config.loss, plugins=plugins, info=self.info, temperature=1.0, chunk_size=None,
            clip_grad=self.config.clip_grad, reuse_current_as_old=False,
        )  # fmt: skip
        return value_train_step(ctx, micro_batches, data, step_samples)

    @torch.no_grad()
    def full_weights(self) -> dict[str, Tensor]:
        """Every parameter gathered to a full CPU tensor (collective; for tests and inspection, not for sync)."""
        reshard(self.model)
        out: dict[str, Tensor] = {}
        for name, param in self.model.named_parameters():
            full = param.full_tensor() if isinstance(param, DTensor) else param
            out[name] = full.detach().to("cpu", copy=True)
        return out
