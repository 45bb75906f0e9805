"""slime.convert: checkpoint conversion HF <-> torch_dist, any Megatron checkpoint -> HF, HF <-> slime.fsdp DCP.

Every conversion validates before writing and publishes its output folder atomically. Importing this package
is cheap: megatron-core is imported only by the commands that build a Megatron model.
"""

from __future__ import annotations

from slime.convert.check import run_check
from slime.convert.cli import main
from slime.convert.dcp_to_hf import DcpToHfConfig, dcp_to_hf
from slime.convert.hf_to_dcp import HfToDcpConfig, hf_to_dcp
from slime.convert.hf_to_fp8 import HfToFp8Config, hf_to_fp8
from slime.convert.hf_to_torch_dist import HfToTorchDistConfig, hf_to_torch_dist
from slime.convert.megatron_to_hf import MegatronToHfConfig, megatron_to_hf
from slime.convert.model_layout import ModelLayout
from slime.convert.torch_dist_to_hf import TorchDistToHfConfig, torch_dist_to_hf

__all__ = [
    "DcpToHfConfig", "HfToDcpConfig", "HfToFp8Config", "HfToTorchDistConfig", "MegatronToHfConfig", "ModelLayout",
    "TorchDistToHfConfig", "dcp_to_hf", "hf_to_dcp", "hf_to_fp8", "hf_to_torch_dist", "main", "megatron_to_hf",
    "run_check", "torch_dist_to_hf",
]  # fmt: skip
