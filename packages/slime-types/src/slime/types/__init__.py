"""slime.types: the data model, the seam Protocols, plugin resolution and errors (standard library only)."""

from slime.types.errors import ConfigError, ContractError, DataError, EngineError, SlimeError, WeightSyncError
from slime.types.generation import FinishReason, GenerateOutput
from slime.types.plugin import check_conformance, check_signature, load_object, resolve
from slime.types.protocols import (
    BufferFilterFn,
    DynamicFilterFn,
    GenerateFn,
    GenerationEngine,
    GroupRewardFn,
    MetricsSink,
    NamedTensor,
    PolicyTrainer,
    RewardFn,
    RewardPostProcessFn,
    RolloutFn,
    WeightReceiver,
    WeightSender,
)
from slime.types.records import RolloutBatch, TrainSample
from slime.types.sample import Sample, Status
from slime.types.sampling import SamplingParams

__all__ = [
    "BufferFilterFn",
    "ConfigError",
    "ContractError",
    "DataError",
    "DynamicFilterFn",
    "EngineError",
    "FinishReason",
    "GenerateFn",
    "GenerateOutput",
    "GenerationEngine",
    "GroupRewardFn",
    "RewardPostProcessFn",
    "MetricsSink",
    "NamedTensor",
    "PolicyTrainer",
    "RewardFn",
    "RolloutBatch",
    "RolloutFn",
    "Sample",
    "SamplingParams",
    "SlimeError",
    "Status",
    "TrainSample",
    "WeightReceiver",
    "WeightSender",
    "WeightSyncError",
    "check_conformance",
    "check_signature",
    "load_object",
    "resolve",
]
