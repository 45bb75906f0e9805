"""slime.megatron.cuda_graphs: the static layout the graphs capture gives the eager row's logits; what is refused.

The capture itself needs a GPU: `ci/gpu/megatron/device.sh graphs` compares graphed gradients with eager ones.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from slime_megatron_testsupport.results import ok

from slime.megatron import ActorConfig
from slime.megatron.cuda_graphs import MIN_SEQUENCES, check_train_graphs, sequence_slots, static_row
from slime.megatron.packing import PackedMicroBatch
from slime.types import ConfigError, TrainSample


@pytest.mark.slow
def test_static_row_logits_equal_the_eager_row(suite: dict) -> None:
    eager = ok(suite, "logits")
    real = sum(s.total_length for s in suite["batch"].samples)
    for slots, got in ok(suite, "static_row").items():
        ids, positions, cu = got["row"]
        assert got["hidden_shape"][-1] < got["logits"].size(-1)  # the graph's output is the hidden states
        assert cu.numel() == slots + 1 and cu[-1].item() == ids.size(1) and positions.size(1) == ids.size(1)
        torch.testing.assert_close(got["logits"][:real], eager["logits"][:real], rtol=1e-5, atol=1e-5)


def _mb(lengths: list[int], pad_multiple: int = 8) -> PackedMicroBatch:
    samples = [
        TrainSample(
            tokens=tuple(range(1, n + 1)), response_length=2, loss_mask=(1, 1), reward=0.0, group_index=i, index=i
        )
        for i, n in enumerate(lengths)
    ]
    return PackedMicroBatch.build(samples, range(len(samples)), pad_multiple=pad_multiple, device=torch.device("cpu"))


def test_static_row_layout() -> None:
    mb = _mb([5, 7])  # 12 tokens + 4 padding (one sequence): offsets [0, 5, 12, 16]
    ids, positions, cu = static_row(mb, 32, sequence_slots(mb.cu_seqlens.numel()))
    assert ids.shape == positions.shape == (1, 32) and torch.equal(ids[0, :16], mb.tokens[0])
    assert ids[0, 16:].eq(0).all() and torch.equal(positions[0, :16], mb.position_ids[0])
    assert cu.tolist() == [0, 5, 12, 16] + [32] * (MIN_SEQUENCES - 3) and cu.dtype == torch.int32
    with pytest.raises(ValueError, match="exceeds"):
        static_row(mb, 8, MIN_SEQUENCES)


@pytest.mark.parametrize(("offsets", "slots"), [(2, 16), (16, 16), (17, 32), (33, 64), (64, 64), (65, 128)])
def test_sequence_slots_leave_room_for_the_padding_sequence(offsets: int, slots: int) -> None:
    assert sequence_slots(offsets) == slots
    assert offsets + 1 <= slots + 1  # the row's offsets plus the end of the padding sequence


def _config(**changes):
    base = dict(
        tensor_model_parallel_size=1, context_parallel_size=1, pipeline_model_parallel_size=1,
        virtual_pipeline_model_parallel_size=None, num_moe_experts=None, recompute_granularity=None,
        hidden_dropout=0.0, attention_dropout=0.0, mtp_num_layers=None,
    )  # fmt: skip
    return SimpleNamespace(**(base | changes))


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"tensor_model_parallel_size": 2}, "--tensor-model-parallel-size=2"),
        ({"context_parallel_size": 2}, "--context-parallel-size=2"),
        ({"pipeline_model_parallel_size": 2}, "--pipeline-model-parallel-size=2"),
        ({"virtual_pipeline_model_parallel_size": 2}, "--virtual-pipeline-model-parallel-size=2"),
        ({"num_moe_experts": 8}, "--num-moe-experts=8"),
        ({"mtp_num_layers": 1}, "--mtp-num-layers=1"),
        ({"recompute_granularity": "full"}, "--recompute-granularity='full'"),
        ({"hidden_dropout": 0.1}, "--hidden-dropout=0.1"),
        ({"attention_dropout": 0.1}, "--attention-dropout=0.1"),
    ],
)
def test_refused_settings_name_the_flag(changes: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("[", "\\[")) as err:
        check_train_graphs(_config(**changes), device=torch.device("cuda"))
    assert "--train-cuda-graphs" in str(err.value)


def test_cpu_and_fixed_micro_batches_are_refused() -> None:
    check_train_graphs(_config(), device=torch.device("cuda"))  # the supported case passes
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        check_train_graphs(_config(), device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="--use-dynamic-batch-size"):
        ActorConfig(hf_checkpoint="x", train_cuda_graphs=True)
    ActorConfig(hf_checkpoint="x", train_cuda_graphs=True, use_dynamic_batch_size=True, max_tokens_per_gpu=512)
