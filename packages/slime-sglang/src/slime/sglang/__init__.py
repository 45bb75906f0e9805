"""slime.sglang: SGLang engines, sglang-router, the async client, the default rollout, and an SGLang-protocol server for CPU."""
