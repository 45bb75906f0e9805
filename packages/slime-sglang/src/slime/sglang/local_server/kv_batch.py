"""`KVBatch`: the key/value cache of a running batch of sequences, left-padded to a common length.

Continuous batching needs three operations transformers' `DynamicCache` does not offer directly: merge two
batches of different lengths, drop finished rows, and trim padding columns nobody uses any more. A `KVBatch`
keeps per-layer `[B, H, L, D]` tensors plus a `[B, L]` attention mask (1 = real token) and each row's number
of real tokens (its next RoPE position). Padding positions hold zeros, never stale values, so a masked key can
never leak NaN into an attention product. This module does not run the model.
"""

from __future__ import annotations

import dataclasses

import torch

LayerKV = tuple[torch.Tensor, torch.Tensor]


@dataclasses.dataclass(slots=True)
class KVBatch:
    """Per-layer keys/values, the attention mask and the per-row token counts of a batch."""

    layers: list[LayerKV]
    mask: torch.Tensor
    """[B, L] int64: 1 where the column holds a real token of that row, 0 for left padding."""
    lengths: torch.Tensor
    """[B] int64: real tokens per row, which is also the position of the row's next token."""

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def select(self, rows: list[int]) -> KVBatch:
        """The sub-batch of `rows` (in that order), with all-padding leading columns trimmed."""
        index = torch.tensor(rows, dtype=torch.long)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0, 0]) if used.numel() else mask.shape[1]
        return KVBatch(
            layers=[
                (k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:]) for k, v in self.layers
            ],
            mask=mask[:, start:].contiguous(),
            lengths=self.lengths.index_select(0, index),
        )

    def merge(self, other: KVBatch) -> KVBatch:
        """This batch's rows followed by `other`'s, both left-padded to the wider of the two."""
        width = max(self.width, other.width)
        a, b = self._left_pad(width), other._left_pad(width)
        return KVBatch(
            layers=[
                (torch.cat([ka, kb]), torch.cat([va, vb]))
                for (ka, va), (kb, vb) in zip(a.layers, b.layers, strict=True)
            ],
            mask=torch.cat([a.mask, b.mask]),
            lengths=torch.cat([a.lengths, b.lengths]),
        )

    def zero_padding(self) -> None:
        """Overwrite keys/values at padding positions with zeros (in place)."""
        keep = self.mask[:, None, :, None].to(self.layers[0][0].dtype)
        self.layers = [(k * keep, v * keep) for k, v in self.layers]

    def _left_pad(self, width: int) -> KVBatch:
        extra = width - self.width
        if extra == 0:
            return self
        pad = (0, 0, extra, 0)  # pad dim -2 (sequence) on the left
        return KVBatch(
            layers=[(torch.nn.functional.pad(k, pad), torch.nn.functional.pad(v, pad)) for k, v in self.layers],
            mask=torch.nn.functional.pad(self.mask, (extra, 0)),
            lengths=self.lengths,
        )
