"""Comparing HF folders in tests: tensors bit for bit, and the logits of the models they hold."""

from __future__ import annotations

from pathlib import Path

import torch

from slime.convert.hf_checkpoint import HFCheckpoint


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of an HF folder (single file or sharded)."""
    hf = HFCheckpoint(folder)
    return dict(hf.iter_tensors(list(hf.tensor_infos)))


def assert_bit_exact(got: Path, original: Path) -> None:
    """Same tensor names, dtypes and bits."""
    a, b = tensors(got), tensors(original)
    assert sorted(a) == sorted(b)
    for name in b:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


def logits(folder: Path) -> torch.Tensor:
    """Logits of the folder's model (float32, eager transformers) on a fixed random batch."""
    from transformers import AutoModelForCausalLM

    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=ids).logits
