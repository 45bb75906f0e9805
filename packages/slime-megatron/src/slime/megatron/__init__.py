"""slime.megatron: The Megatron-core actor: model from HF via mbridge, packed micro-batches, train step, torch_dist checkpoints."""
