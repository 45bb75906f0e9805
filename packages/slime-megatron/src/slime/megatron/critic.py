"""The PPO critic: the actor's architecture with the LM head replaced by a scalar value head.

The value head is named `output_layer` with weight shape `[1, hidden]`, which mbridge recognises as a value
model (it skips `lm_head.weight` when loading HF weights), so the critic's trunk starts from the same HF or
torch_dist weights as the actor and only the head is freshly initialised. The head is replicated over TP ranks;
with sequence parallelism it gathers the sequence first, so every TP rank computes the same values and
gradients. It does not compute advantages or losses (`rollout_data`, `train_step`).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from megatron.core.tensor_parallel.mappings import gather_from_sequence_parallel_region
from megatron.core.transformer.module import MegatronModule
from slime.megatron.model import ModelStack, build_model_stack


class ValueHead(MegatronModule):
    """`hidden [s, b, h] -> values [s, b, 1]`, called with the LM head's signature."""

    def __init__(self, config) -> None:
        super().__init__(config=config)
        self.weight = torch.nn.Parameter(torch.empty(1, config.hidden_size, dtype=config.params_dtype))
        torch.nn.init.normal_(self.weight, mean=0.0, std=config.init_method_std)
        self.weight.tensor_model_parallel = False
        self.sequence_parallel = config.sequence_parallel

    def forward(self, hidden_states: torch.Tensor, weight=None, runtime_gather_output=None):
        """Return `(values, None)` like a Megatron linear layer; `weight` (the tied embedding) is ignored."""
        if self.sequence_parallel:
            hidden_states = gather_from_sequence_parallel_region(hidden_states, tensor_parallel_output_grad=True)
        return torch.nn.functional.linear(hidden_states, self.weight), None


def attach_value_head(module: torch.nn.Module) -> None:
    """Replace the GPTModel's output layer (last pipeline stage) by a `ValueHead`."""
    if getattr(module, "post_process", False):
        module.output_layer = ValueHead(module.config)
        module.share_embeddings_and_output_weights = False


def build_critic_stack(ns: argparse.Namespace, hf_config: Any) -> ModelStack:
    """A trainable critic stack (DDP, optimizer, scheduler) from the same flags as the actor."""
    return build_model_stack(ns, hf_config, post_build=attach_value_head)
