"""slime.train: Ray orchestration, slime's CLI and RunConfig, the sync and async loops, checkpoints, metrics and the CPU demo."""
