"""`PackedBatch`: the tensors of one padding-free micro-batch, built from `TrainSample`s.

All samples' tokens are concatenated into one row; position ids restart at 0 per sample and `cu_seqlens`
delimits them for `slime_packed` attention. Only the logits that predict response tokens are computed
(`logit_index`), so the response side is the packed `[T]` layout slime.loss uses, with `response_cu_seqlens`.
An empty micro-batch (a rank with nothing to do this round) is a one-token dummy whose loss is zero.
It does not run the model and does not know about ranks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from slime.types import ContractError, TrainSample


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PackedBatch:
    """One micro-batch: `N` tokens of `B` samples, `T` of them response tokens."""

    sample_ids: tuple[int, ...]
    """Indices of the samples in the rollout batch, in packing order."""
    input_ids: Tensor
    """[1, N] int64."""
    position_ids: Tensor
    """[1, N] int64, restarting at 0 for each sample."""
    cu_seqlens: Tensor
    """[B+1] int32 offsets of the samples in the row."""
    max_seqlen: int
    logit_index: Tensor
    """[T] int64 row positions whose logits predict the response tokens."""
    target_ids: Tensor
    """[T] int64 response token ids."""
    response_cu_seqlens: Tensor
    """[B+1] int64 offsets of each sample's response tokens in the packed [T] layout."""
    loss_mask: Tensor
    """[T] float32 0/1."""

    @property
    def is_empty(self) -> bool:
        """A dummy micro-batch: the rank has no sample this round but must join the collectives."""
        return not self.sample_ids

    @property
    def num_tokens(self) -> int:
        """Tokens in the row (prompt + response of every sample)."""
        return 0 if self.is_empty else int(self.input_ids.shape[1])

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the HF causal LM's forward for this micro-batch."""
        return {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "cu_seq_lens_q": self.cu_seqlens,
            "cu_seq_lens_k": self.cu_seqlens,
            "max_length_q": self.max_seqlen,
            "max_length_k": self.max_seqlen,
            "logits_to_keep": self.logit_index,
            "use_cache": False,
        }

    def gather(self, per_sample: Sequence[Tensor | None], device: torch.device | None = None) -> Tensor | None:
        """Concatenate the [R_i] tensors of this batch's samples (rollout-batch indexed) into [T]; None if any is."""
        parts = [per_sample[i] for i in self.sample_ids]
        if any(p is None for p in parts):
            return None
        if not parts:
            return torch.zeros(0, device=device)
        return torch.cat(parts).to(device)  # type: ignore[arg-type]  # None excluded above

    def split(self, packed: Tensor) -> list[Tensor]:
        """Inverse of `gather`: [T] -> one [R_i] tensor per sample, in `sample_ids` order."""
        sizes = (self.response_cu_seqlens[1:] - self.response_cu_seqlens[:-1]).tolist()
        return list(packed.split(sizes))


def _check(sample: TrainSample) -> None:
    if sample.prompt_length < 1:
        raise ContractError(
            f"TrainSample {sample.index} has no prompt token (response_length == len(tokens) == "
            f"{sample.response_length}); the first response token needs a token before it to be predicted."
        )


def pack(samples: Sequence[TrainSample], sample_ids: Sequence[int], device: torch.device) -> PackedBatch:
    """Pack `samples[i] for i in sample_ids` into one row on `device`."""
    if not sample_ids:
        return _empty(device)
    tokens: list[int] = []
    positions: list[int] = []
    logit_index: list[int] = []
    targets: list[int] = []
    mask: list[int] = []
    cu, response_cu = [0], [0]
    for i in sample_ids:
        s = samples[i]
        _check(s)
        start = len(tokens)
        tokens.extend(s.tokens)
        positions.extend(range(s.total_length))
        # The logit at position p predicts token p + 1.
        logit_index.extend(range(start + s.prompt_length - 1, start + s.total_length - 1))
        targets.extend(s.tokens[s.prompt_length :])
        mask.extend(s.loss_mask)
        cu.append(len(tokens))
        response_cu.append(len(targets))

    def as_tensor(values: list[int], dtype: torch.dtype = torch.int64) -> Tensor:
        return torch.tensor(values, dtype=dtype, device=device)

    return PackedBatch(
        sample_ids=tuple(sample_ids),
        input_ids=as_tensor(tokens).unsqueeze(0),
        position_ids=as_tensor(positions).unsqueeze(0),
        cu_seqlens=as_tensor(cu, torch.int32),
        max_seqlen=max(samples[i].total_length for i in sample_ids),
        logit_index=as_tensor(logit_index),
        target_ids=as_tensor(targets),
        response_cu_seqlens=as_tensor(response_cu),
        loss_mask=as_tensor(mask, torch.float32),
    )


def _empty(device: torch.device) -> PackedBatch:
    zero = torch.zeros(1, 1, dtype=torch.int64, device=device)
    return PackedBatch(
        sample_ids=(),
        input_ids=zero,
        position_ids=zero,
        cu_seqlens=torch.tensor([0, 1], dtype=torch.int32, device=device),
        max_seqlen=1,
        logit_index=torch.zeros(1, dtype=torch.int64, device=device),
        target_ids=torch.zeros(0, dtype=torch.int64, device=device),
        response_cu_seqlens=torch.zeros(1, dtype=torch.int64, device=device),
        loss_mask=torch.zeros(0, dtype=torch.float32, device=device),
    )
