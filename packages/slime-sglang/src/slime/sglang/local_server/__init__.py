"""slime.sglang.local_server: an SGLang-protocol HTTP server backed by transformers, for CPU users and CI.

It serves `/generate` with exact per-token log-probs of the sampled tokens (SGLang's `return_logprob`
semantics), continuous batching, abort, stop strings / token ids, and the weight-update routes fed by
`slime.sync` receivers. Start it with `python -m slime.sglang.local_server --model-path DIR --port P`.
"""

from __future__ import annotations

from slime.sglang.local_server.cli import READY_LINE, build_parser, main, serve
from slime.sglang.local_server.config import LocalServerConfig

__all__ = ["READY_LINE", "LocalServerConfig", "build_parser", "main", "serve"]
