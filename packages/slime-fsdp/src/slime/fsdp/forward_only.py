"""Forward-only passes over this rank's share of a rollout batch, gathered into per-sample tensors on every rank.

The actor's (reference's, teacher's) log-probs and the critic's values are computed this way: the rank's planned
micro-batches run in eval mode without autograd, each `[T]` result is split per sample and moved to the host
after the loop, and the ranks exchange theirs, so every rank returns the whole batch in batch order. It does
not choose weights or plan micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from slime.fsdp.distributed import DistInfo, all_gather_objects
from slime.fsdp.model import reshard
from slime.fsdp.packed_batch import PackedBatch, pack
from slime.types import RolloutBatch

PackedFn = Callable[[nn.Module, PackedBatch], Tensor]
"""`(model, micro-batch) -> [T]` per-response-token result of one micro-batch."""


def forward_only(
    model: nn.Module, batch: RolloutBatch, plan: Sequence[Sequence[int]], info: DistInfo, run: PackedFn
) -> list[Tensor]:
    """`run` over this rank's micro-batches `plan`; returns one [R_i] float32 CPU tensor per sample of `batch`.

    Collective: every rank calls it with the same batch (and its own plan) and gets the same result.
    """
    outputs: list[tuple[PackedBatch, Tensor]] = []
    model.eval()
    with torch.no_grad():
        for ids in plan:
            mb = pack(batch.samples, ids, info.device)
            outputs.append((mb, run(model, mb)))
    reshard(model)  # a forward without backward leaves the root unit gathered
    local: dict[int, Tensor] = {}
    for mb, result in outputs:  # to the host after the loop: no drain between micro-batches
        local |= dict(zip(mb.sample_ids, (t.float().cpu() for t in mb.split(result)), strict=True))
    merged: dict[int, Tensor] = {}
    for part in all_gather_objects(local, info.world_size):
        merged |= part  # type: ignore[arg-type]  # every rank sends a dict
    return [merged[i] for i in range(len(batch.samples))]
