"""`ValueModel`: the PPO critic's network, the actor's HF trunk with a scalar value head instead of the LM head.

The trunk is the base model of an HF causal-LM folder (its `lm_head` is dropped), so the critic starts from the
actor's weights; the head is a bias-free `Linear(hidden, 1)` drawn from N(0, initializer_range) under the config
seed, as slime's Megatron critic replaces the output layer by `hidden -> 1` and re-initialises it. The value of a
response token is read at the position that predicts it (the state before the action), like its log-prob.
It computes values only: losses, advantages and the optimizer are `slime.fsdp.critic`'s.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh

from slime.fsdp.config import FSDPConfig
from slime.fsdp.model import load_hf_model, shard_model
from slime.fsdp.packed_batch import PackedBatch


class ValueModel(nn.Module):
    """`trunk(input) -> hidden [1, N, H] -> value_head -> [N]`, read at the response-predicting positions."""

    def __init__(self, trunk: nn.Module, *, hidden_size: int, init_std: float) -> None:
        super().__init__()
        self.model = trunk
        self.value_head = nn.Linear(hidden_size, 1, bias=False)
        nn.init.normal_(self.value_head.weight, mean=0.0, std=init_std)

    @property
    def _no_split_modules(self) -> object:
        # FSDP wraps the modules the trunk marks as not-to-be-split (its decoder layers), like the actor's.
        return getattr(self.model, "_no_split_modules", None)

    def forward(self, *, logits_to_keep: Tensor, **kwargs: object) -> Tensor:
        """Values [T] at the rows `logits_to_keep` of the packed row (kwargs of `PackedBatch.model_kwargs`)."""
        hidden = self.model(**kwargs).last_hidden_state[0]  # [N, H]
        return self.value_head(hidden[logits_to_keep]).squeeze(-1)


def build_value_model(config: FSDPConfig, mesh: DeviceMesh, device: torch.device) -> ValueModel:
    """Load the trunk of `critic_load` (default `hf_checkpoint`), add the seeded value head, shard like the actor."""
    trunk = load_hf_model(config.critic_load or config.hf_checkpoint).base_model  # the LM head is dropped
    if config.gradient_checkpointing:
        trunk.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    hf_config = trunk.config
    generator_state = torch.get_rng_state()
    torch.manual_seed(config.seed)  # the same head on every rank
    model = ValueModel(trunk, hidden_size=hf_config.hidden_size, init_std=hf_config.initializer_range)
    torch.set_rng_state(generator_state)
    shard_model(model, config, mesh, device)
    return model


@dataclasses.dataclass(frozen=True, slots=True)
class ValueOutput:
    """[T] float32 values of one micro-batch; `anchor` ties a dummy micro-batch into autograd (see forward.py)."""

    values: Tensor
    anchor: Tensor


def forward_values(model: nn.Module, batch: PackedBatch) -> ValueOutput:
    """Run the critic on `batch`: the values of its response tokens (no temperature: values are not logits)."""
    values = model(**batch.model_kwargs()).float()
    if batch.is_empty:
        return ValueOutput(values.new_zeros(0), values.sum() * 0.0)
    return ValueOutput(values, values.new_zeros(()))
