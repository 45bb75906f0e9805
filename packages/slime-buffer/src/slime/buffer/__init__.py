"""slime.buffer: prompt data sources, the partial-rollout buffer, filters, batch arithmetic, packing, balancing."""

from slime.buffer.balancing import balance_partitions, estimate_flops, greedy_partition, partition_spread
from slime.buffer.batch_config import BatchConfig, check_batch_arithmetic
from slime.buffer.context_parallel import zigzag_cp_split, zigzag_padded_length, zigzag_rank_tokens
from slime.buffer.data_source import RolloutDataSource
from slime.buffer.dp_schedule import align_micro_batch_count, distribute_micro_batches, plan_dp_micro_batches
from slime.buffer.dynamic_sampling import DynamicSamplingPlanner, GroupOutcome
from slime.buffer.filters import (
    DynamicFilterOutput,
    check_reward_nonzero_std,
    check_reward_nonzero_std_with_fallback,
    group_reward_std,
    pop_first,
)
from slime.buffer.packing import get_minimum_num_micro_batch_size, pack_micro_batches
from slime.buffer.prompt_data import BadRow, PromptDataConfig, PromptDataset, load_prompt_data

# fmt: off
__all__ = [
    "BadRow", "BatchConfig", "DynamicFilterOutput", "DynamicSamplingPlanner", "GroupOutcome", "PromptDataConfig",
    "PromptDataset", "RolloutDataSource", "align_micro_batch_count", "balance_partitions", "check_batch_arithmetic",
    "check_reward_nonzero_std", "check_reward_nonzero_std_with_fallback", "distribute_micro_batches",
    "estimate_flops", "get_minimum_num_micro_batch_size", "greedy_partition", "group_reward_std", "load_prompt_data",
    "pack_micro_batches", "partition_spread", "plan_dp_micro_batches", "pop_first", "zigzag_cp_split",
    "zigzag_padded_length", "zigzag_rank_tokens",
]
# fmt: on
