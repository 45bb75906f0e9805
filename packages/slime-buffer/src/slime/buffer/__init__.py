"""slime.buffer: Prompt data sources, the partial-rollout buffer, filters, batch arithmetic, packing and balancing."""
