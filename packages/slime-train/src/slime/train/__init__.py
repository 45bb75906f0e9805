"""slime.train: Ray orchestration, slime's CLI and RunConfig, the loops, checkpoints, metrics and the CPU demo."""
