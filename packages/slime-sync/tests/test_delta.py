"""Delta transport: full snapshot first, then only changed bytes; checksums, base checks, idempotent apply."""

from __future__ import annotations

import json

import pytest
import torch

from slime.sync import DeltaReceiver, DeltaSender
from slime.types import WeightSyncError


def _step(weights: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """An optimizer-step-like change: a few elements of two tensors move."""
    g = torch.Generator().manual_seed(seed)
    out = {n: t.clone() for n, t in weights.items()}
    for name in ("model.layers.0.mlp.big.weight", "model.norm.weight"):
        flat = out[name].view(-1)
        idx = torch.randint(0, flat.numel(), (5,), generator=g)
        flat[idx] += torch.randn(5, generator=g).to(flat.dtype)
    return out


def test_round_trip_across_processes(engines, weight_factory, expect, tmp_path) -> None:
    engine = engines[0]
    engine.new("delta", root=str(tmp_path), verify_checksums=True)
    sender = DeltaSender(engine.deliver("delta"))
    weights = weight_factory(0)
    first = sender.publish(weights.items(), 1)
    assert first["changed_tensors"] == len(weights)
    assert engine.weights("delta") == expect(weights)

    weights = _step(weights, 1)
    second = sender.publish(weights.items(), 2)
    assert second["changed_tensors"] == 2 and second["wire_bytes"] < first["wire_bytes"] / 5
    assert engine.weights("delta") == expect(weights)
    assert sender.publish(weights.items(), 3)["changed_tensors"] == 0  # nothing changed: version still moves
    assert engine.call(op="apply", transport="delta", payload={}, peer="::1")["held"] == 3

    files = DeltaSender(engine.deliver("delta"), directory=tmp_path)  # a new sender starts with a full publish
    weights = _step(weights, 2)
    files.publish(weights.items(), 4)
    weights = _step(weights, 3)
    files.publish(weights.items(), 5)
    assert engine.weights("delta") == expect(weights)
    assert [p.name for p in tmp_path.iterdir()] == ["delta_v000005.bin"]


def test_missed_version_refused_then_full_recovers(weight_factory) -> None:
    weights = weight_factory(0)
    loaded: dict[str, torch.Tensor] = {}
    receiver = DeltaReceiver(lambda items: loaded.update(items))
    payloads: list[dict] = []
    sender = DeltaSender(payloads.append)
    sender.publish(weights.items(), 1)
    sender.publish(_step(weights, 1).items(), 2)
    receiver.apply(payloads[0])
    receiver.apply(json.loads(json.dumps(payloads[0])))  # idempotent
    assert receiver.version == 1
    late = DeltaReceiver(lambda items: None)
    with pytest.raises(WeightSyncError, match="against version 1"):
        late.apply(payloads[1])
    assert late.version == -1
    receiver.apply(payloads[1])
    assert all(torch.equal(loaded[n], t) for n, t in _step(weights, 1).items())
    sender.publish(weights.items(), 3, full=True)
    late.apply(payloads[2])
    assert late.version == 3


@pytest.mark.parametrize(
    "garble",
    [
        lambda p: p.update(data=p["data"][:-8]),  # truncated blob
        lambda p: p.update(data="!!!"),
        lambda p: p["tensors"][0].update(checksum="0" * 32),
        lambda p: p["tensors"][0].update(encoding="same"),
        lambda p: p["tensors"][0].update(nbytes=1),
        lambda p: p["tensors"][0].update(offset=10**9),
        lambda p: p["tensors"].append(dict(p["tensors"][0])),
        lambda p: p.update(base_version=0),
        lambda p: p.pop("tensors"),
        lambda p: p["tensors"].pop(),  # truncated but well-formed: caught by `num_tensors`
    ],
)
def test_bad_payload_keeps_weights(weight_factory, garble) -> None:
    weights = weight_factory(0)
    loaded: dict[str, torch.Tensor] = {}
    receiver = DeltaReceiver(lambda items: loaded.update(items))
    payloads: list[dict] = []
    sender = DeltaSender(payloads.append)
    sender.publish(weights.items(), 1)
    sender.publish(_step(weights, 1).items(), 2, full=True)
    receiver.apply(payloads[0])
    bad = json.loads(json.dumps(payloads[1]))
    garble(bad)
    with pytest.raises(WeightSyncError):
        receiver.apply(bad)
    assert receiver.version == 1
    assert all(torch.equal(loaded[n], t) for n, t in weights.items())
    receiver.apply(payloads[1])  # the intact payload still applies afterwards
    assert receiver.version == 2
