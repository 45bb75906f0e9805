"""slime.convert: Checkpoint conversion: HF <-> torch_dist, torch_dist -> HF, any Megatron checkpoint -> HF, HF <-> FSDP DCP."""
