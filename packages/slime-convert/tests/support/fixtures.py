"""Helpers a worker step can call (`["call", "<name>", {kwargs}]`): inputs no command of slime.convert writes.

`write_legacy_checkpoint` writes a Megatron-LM `--ckpt-format torch` checkpoint (one `model_optim_rng.pt`, keys
renamed to TransformerEngine's as a TE-built model saves them) holding an HF model's weights, loaded by mbridge.
"""

from __future__ import annotations

from pathlib import Path


def write_legacy_checkpoint(hf_dir: str, root: str, iteration: int) -> None:
    import torch
    from transformers import AutoConfig

    from slime.convert import megatron_world as world
    from slime.convert.megatron_model import build_weights_stack, conversion_namespace
    from slime.megatron import parse_megatron_args, training_configs
    from slime.megatron.bridge import LOCAL_TO_TE_NAMES

    ns, _ = parse_megatron_args([])
    ns = conversion_namespace(ns, torch.float32)
    world.start(training_configs.parallel_sizes(ns))
    stack = build_weights_stack(ns, AutoConfig.from_pretrained(hf_dir))
    stack.bridge.load_hf_weights(stack.modules, hf_dir)
    state = {}
    for key, value in stack.modules[0].state_dict().items():
        for local, te in LOCAL_TO_TE_NAMES.items():
            key = key.replace(local, te) if key.endswith("." + local) else key
        state[key] = value
    folder = Path(root) / f"iter_{iteration:07d}" / "mp_rank_00"
    folder.mkdir(parents=True)
    torch.save({"model": state, "iteration": iteration, "checkpoint_version": 3.0}, folder / "model_optim_rng.pt")
    (Path(root) / "latest_checkpointed_iteration.txt").write_text(str(iteration))
    world.stop()


def record_local_aliases(out: str) -> None:
    """Write slime.megatron's local -> TE name map, for the test that slime.convert's copy agrees with it."""
    import json

    from slime.megatron.bridge import LOCAL_TO_TE_NAMES

    Path(out).write_text(json.dumps(LOCAL_TO_TE_NAMES))
