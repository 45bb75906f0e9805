"""slime.buffer: prompt data sources, the partial-rollout buffer, filters, batch arithmetic, packing, balancing."""

from slime.buffer.data_source import RolloutDataSource
from slime.buffer.filters import DynamicFilterOutput, check_reward_nonzero_std, pop_first
from slime.buffer.packing import get_minimum_num_micro_batch_size, pack_micro_batches
from slime.buffer.prompt_data import BadRow, PromptDataConfig, PromptDataset, load_prompt_data

__all__ = [
    "BadRow", "DynamicFilterOutput", "PromptDataConfig", "PromptDataset", "RolloutDataSource",
    "check_reward_nonzero_std", "get_minimum_num_micro_batch_size", "load_prompt_data", "pack_micro_batches",
    "pop_first",
]
