"""slime.fsdp: The torch-native trainer: FSDP2 over a transformers causal LM, DCP checkpoints, LoRA via peft."""
