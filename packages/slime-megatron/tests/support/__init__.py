"""Test support of slime.megatron: worker worlds, the CPU shim (workers only), scenarios, random batches."""
