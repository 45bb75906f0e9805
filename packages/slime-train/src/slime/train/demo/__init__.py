"""The embedded default: a CPU demo that trains a tiny model with GRPO on a toy task, end to end."""
