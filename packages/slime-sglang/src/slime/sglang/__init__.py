"""slime.sglang: SGLang engines, sglang-router, the async client, the default rollout, and an SGLang-protocol
server for CPU (`slime.sglang.local_server`)."""

from slime.sglang.client import EngineClient
from slime.sglang.engine_group import EngineGroup, EngineGroupConfig
from slime.sglang.engine_process import EngineProcess
from slime.sglang.protocol import generate_body, parse_generate_response
from slime.sglang.router import Router, RouterConfig
from slime.sglang.server_args import EngineConfig, split_sglang_args

__all__ = [
    "EngineClient", "EngineConfig", "EngineGroup", "EngineGroupConfig", "EngineProcess", "Router", "RouterConfig",
    "generate_body", "parse_generate_response", "split_sglang_args",
]  # fmt: skip
