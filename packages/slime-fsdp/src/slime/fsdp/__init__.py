"""slime.fsdp: The torch-native trainer: FSDP2 over a transformers causal LM (+ PPO critic), DCP, LoRA via peft."""

from slime.fsdp.config import FSDPConfig
from slime.fsdp.critic import FSDPCritic
from slime.fsdp.distributed import DistInfo, init_distributed
from slime.fsdp.optimizer import learning_rate
from slime.fsdp.packed_attention import ATTN_IMPLEMENTATION, register_packed_attention
from slime.fsdp.packed_batch import PackedBatch, pack
from slime.fsdp.policy import FSDPPolicy
from slime.fsdp.schedule import BatchingPlan, plan_step, split_steps

__all__ = [
    "ATTN_IMPLEMENTATION",
    "BatchingPlan",
    "DistInfo",
    "FSDPConfig",
    "FSDPCritic",
    "FSDPPolicy",
    "PackedBatch",
    "init_distributed",
    "learning_rate",
    "pack",
    "plan_step",
    "register_packed_attention",
    "split_steps",
]
