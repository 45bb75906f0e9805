"""`pack`: positions restart per sample, the logits kept are exactly those predicting response tokens."""

from __future__ import annotations

import pytest
import torch

from slime.fsdp import pack
from slime.types import ContractError, TrainSample


def sample(index, prompt, response, mask=None):
    return TrainSample(
        tokens=tuple(prompt + response), response_length=len(response), loss_mask=tuple(mask or [1] * len(response)),
        reward=0.0, group_index=0, index=index,
    )  # fmt: skip


def test_layout():
    samples = [sample(0, [5, 6], [7, 8, 9], [1, 0, 1]), sample(1, [10], [11])]
    mb = pack(samples, [1, 0], torch.device("cpu"))
    assert mb.sample_ids == (1, 0)
    assert mb.input_ids.tolist() == [[10, 11, 5, 6, 7, 8, 9]]
    assert mb.position_ids.tolist() == [[0, 1, 0, 1, 2, 3, 4]]
    assert mb.cu_seqlens.tolist() == [0, 2, 7] and mb.max_seqlen == 5
    assert mb.logit_index.tolist() == [0, 3, 4, 5]  # the token before each response token
    assert mb.input_ids[0, mb.logit_index + 1].tolist() == mb.target_ids.tolist() == [11, 7, 8, 9]
    assert mb.response_cu_seqlens.tolist() == [0, 1, 4]
    assert mb.loss_mask.tolist() == [1, 1, 0, 1]
    assert mb.num_tokens == 7 and not mb.is_empty

    per_sample = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0])]
    packed = mb.gather(per_sample)
    assert packed.tolist() == [4.0, 1.0, 2.0, 3.0]
    assert [t.tolist() for t in mb.split(packed)] == [[4.0], [1.0, 2.0, 3.0]]
    assert mb.gather([None, torch.tensor([4.0])]) is None


def test_empty_and_invalid():
    mb = pack([], [], torch.device("cpu"))
    assert mb.is_empty and mb.num_tokens == 0 and mb.target_ids.numel() == 0
    with pytest.raises(ContractError, match="no prompt token"):
        pack([sample(0, [], [1, 2])], [0], torch.device("cpu"))
