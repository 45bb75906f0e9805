"""Weight updates into the local servers through every slime.sync transport and SGLang's native disk body.

After each update both engines' log-probs must equal a teacher-forced forward of the *new* weights; each test
puts the original checkpoint back afterwards (the engines are shared).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from slime.sglang.client import EngineClient
from slime.sglang.engine_group import EngineGroup
from slime.sync import BroadcastSender, DeltaSender, DiskSender, SharedMemorySender
from slime.types import WeightSyncError

PROMPTS = [[5, 9, 13, 40], [100, 7]]


@pytest.fixture(scope="session")
def new_model(reference_model: torch.nn.Module) -> torch.nn.Module:
    """The tiny model with every weight moved by seeded noise: clearly different log-probs."""
    model = copy.deepcopy(reference_model)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=g).to(param.device) * 0.05)
    return model


@pytest.fixture
def restore(group: EngineGroup, model_dir: Path) -> Iterator[None]:
    yield
    asyncio.run(_call(group, lambda c: c.update_weights_from_disk({"model_path": str(model_dir),
                                                                      "weight_version": "default"})))  # fmt: skip


async def _call(group: EngineGroup, fn: Callable[[EngineClient], Any]) -> Any:
    async with EngineClient(group.router_url) as client:
        return await fn(client)


def deliver_to(group: EngineGroup) -> Callable[[dict[str, Any]], Any]:
    """A sender's `deliver`: one HTTP fan-out per payload (called from the sender's threads)."""
    return lambda payload: asyncio.run(_call(group, lambda c: c.deliver_weights(payload)))


def assert_serves(group: EngineGroup, model: torch.nn.Module, teacher, version: str, atol: float = 1e-5) -> None:
    """Every engine's greedy log-probs equal teacher forcing of `model`, tagged with `version`."""

    async def go():
        outs = []
        for url in group.engine_urls:
            async with EngineClient(url) as client:
                outs += [await client.generate(p, {"max_new_tokens": 5, "temperature": 0.0}) for p in PROMPTS]
        return outs

    outputs = asyncio.run(go())
    pairs = [(p, list(o.output_ids)) for p, o in zip(PROMPTS * len(group.engine_urls), outputs, strict=True)]
    for out, ref in zip(outputs, teacher(model, pairs), strict=True):
        assert out.weight_version == version
        assert max(abs(a - b) for a, b in zip(out.output_log_probs, ref, strict=True)) < atol


def test_native_disk_body_loads_an_hf_folder(
    group, new_model, teacher_forcing, tmp_path, restore, logprob_atol, model_dir
) -> None:
    new_model.save_pretrained(tmp_path)
    for tokenizer_file in model_dir.glob("tokenizer*"):  # SGLang reloads the folder as a model, tokenizer included
        (tmp_path / tokenizer_file.name).write_bytes(tokenizer_file.read_bytes())
    body = {"model_path": str(tmp_path), "weight_version": "v-native"}
    asyncio.run(_call(group, lambda c: c.update_weights_from_disk(body)))
    assert_serves(group, new_model, teacher_forcing, "v-native", logprob_atol)
    infos = asyncio.run(_call(group, lambda c: asyncio.gather(*(c.model_info(u) for u in group.engine_urls))))
    assert {info["weight_version"] for info in infos} == {"v-native"}


@pytest.mark.local_only  # real SGLang does not speak slime.sync payloads
@pytest.mark.parametrize("transport", ["disk", "shm", "delta", "broadcast"])
def test_slime_sync_transports(
    group, new_model, reference_model, teacher_forcing, tmp_path, transport, restore
) -> None:
    deliver = deliver_to(group)
    folders = iter(tmp_path / str(i) for i in range(3))
    senders = {
        "disk": lambda: DiskSender(deliver, next(folders)),
        "shm": lambda: SharedMemorySender(deliver),
        "delta": lambda: DeltaSender(deliver),
        "broadcast": lambda: BroadcastSender(deliver, world_size=1 + len(group.engine_urls), timeout_s=120),
    }
    sender = senders[transport]()
    try:
        sender.publish(list(new_model.state_dict().items()), version=1)
        assert_serves(group, new_model, teacher_forcing, "1")
        sender.publish(list(reference_model.state_dict().items()), version=2)
        assert_serves(group, reference_model, teacher_forcing, "2")
        if transport != "broadcast":  # (a second broadcast group would replace the first; same version rule)
            with pytest.raises(WeightSyncError, match="refusing weight version 1"):
                senders[transport]().publish(list(new_model.state_dict().items()), version=1)
            assert_serves(group, reference_model, teacher_forcing, "2")
    finally:
        sender.close()


@pytest.mark.local_only
def test_refusals_are_clear(group, restore) -> None:
    async def go():
        async with EngineClient(group.router_url) as client:
            errors = []
            for call in (
                client.update_weights_from_tensor({"serialized_named_tensors": ["gASV"]}),
                client.deliver_weights({"format": "slime.sync/1", "transport": "carrier-pigeon", "version": 1}),
                client.update_weights_from_disk({"model_path": "/nonexistent/folder"}),
                client.init_weights_update_group({"format": "slime.sync/1", "transport": "broadcast", "version": 0,
                                                  "op": "init"}),
            ):  # fmt: skip
                with pytest.raises(WeightSyncError) as info:
                    await call
                errors.append(str(info.value))
            return errors

    pickled, unknown, missing, rankless = asyncio.run(go())
    assert "never unpickled" in pickled
    assert "carrier-pigeon" in unknown
    assert "no *.safetensors file" in missing
    assert "rank_offset" in rankless
