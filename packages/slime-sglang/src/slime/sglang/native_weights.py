"""slime.sync payloads as stock SGLang's own weight-update calls (`EngineClient` with `backend="sglang"`).

`native_calls` translates one payload into the ordered SGLang calls that carry it (route + body, the same
for every worker or built per worker), with the field names and types of SGLang 0.5.17's
`io_struct.*ReqInput`; `deliver_native` makes those calls the way slime does around an update:

- a publish (`shm`, `disk` or broadcast `update` payload, part 0) starts with `/pause_generation`
  (mode `abort`) and `/flush_cache` on every worker (retried while requests drain, as slime's 60 s loop);
  its last part ends with `/continue_generation`. On a failure the engines stay paused: no sample is ever
  generated from half-loaded weights; the next publish (or `continue_generation`) resumes them.
- `shm` (colocated): one `/update_weights_from_tensor` per bucket, `load_format="flattened_bucket"`, each
  TP rank's pickled `FlattenedTensorBucket` from `slime.sglang.flattened_bucket` (loopback only).
- `broadcast`: `init` -> `/init_weights_update_group` (worker i gets `rank_offset = 1 + i * tp_size`, its
  TP ranks follow; the trainer is rank 0); `update` -> one `/update_weights_from_distributed` per bucket,
  in manifest order, while the sender broadcasts that bucket (layout `tensors`: one broadcast per tensor,
  SGLang's default; `flattened`: `load_format="flattened_bucket"`); `destroy` -> `/destroy_weights_update_group`.
- `disk`: `/update_weights_from_disk` with the published folder as `model_path`.

Every update carries `weight_version = str(version)` and `flush_cache=False` (the cache was flushed before).
`delta` needs slime's patched SGLang (`/pull_weights`) and is refused. This module does not start engines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from slime.sglang.flattened_bucket import LOAD_FORMAT, serialize_bucket
from slime.sync.buckets import BucketManifest, parse_manifests
from slime.types import ConfigError, EngineError, WeightSyncError

if TYPE_CHECKING:  # the client imports this module; at run time it is passed in
    from slime.sglang.client import EngineClient

Body = Mapping[str, Any] | Callable[[int, str], Mapping[str, Any]]
"""A body for every worker, or built per worker from `(index, url)`."""

FLUSH_TIMEOUT_S = 60.0
"""How long `/flush_cache` is retried while aborted requests drain (slime: 60 tries, 1 s apart)."""


@dataclasses.dataclass(frozen=True, slots=True)
class NativeCall:
    """One SGLang call to make on every worker (concurrently), before the next call of the same payload."""

    route: str
    body: Body


def native_calls(payload: Mapping[str, Any], *, num_workers: int, tp_size: int = 1) -> list[NativeCall]:
    """The SGLang calls that carry `payload` to `num_workers` engines of `tp_size` GPUs each.

    Raises:
        WeightSyncError: the payload is garbled, or of a transport stock SGLang cannot take (`delta`).
        ConfigError: a broadcast `world_size` that does not count 1 + num_workers * tp_size ranks.
    """
    transport, op = payload.get("transport"), payload.get("op", "update")
    version = str(payload.get("version"))
    if transport == "shm":
        buckets = payload.get("buckets")
        if not isinstance(buckets, list) or not all(isinstance(b, Mapping) for b in buckets):
            raise WeightSyncError("shm payload `buckets` must be a list of {manifest, handle}.")
        manifests = parse_manifests([b.get("manifest") for b in buckets], payload.get("num_buckets"))
        return [_tensor_call(m, b.get("handle"), version, tp_size) for m, b in zip(manifests, buckets, strict=True)]
    if transport == "disk":
        if not isinstance(payload.get("path"), str):
            raise WeightSyncError(f"disk payload `path` must be a folder path, got {payload.get('path')!r}.")
        body = {"model_path": payload["path"], "weight_version": version, "flush_cache": False}
        return [NativeCall("/update_weights_from_disk", body)]
    if transport == "broadcast":
        return _broadcast_calls(payload, str(op), version, num_workers, tp_size)
    if transport == "delta":
        raise WeightSyncError(
            "transport 'delta' needs slime's patched SGLang (/pull_weights); stock SGLang takes "
            "--update-weight-transport disk, nccl (broadcast) or the colocated tensor path."
        )
    raise WeightSyncError(f"payload `transport` {transport!r} has no SGLang route (shm, broadcast, disk).")


def _tensor_call(manifest: BucketManifest, handle: Any, version: str, tp_size: int) -> NativeCall:
    if not isinstance(handle, Mapping):
        raise WeightSyncError(f"shm bucket {manifest.index} has no memory `handle` (got {handle!r}).")
    body = {
        "serialized_named_tensors": serialize_bucket(manifest, handle, num_copies=tp_size),
        "load_format": LOAD_FORMAT,
        "flush_cache": False,
        "weight_version": version,
    }
    return NativeCall("/update_weights_from_tensor", body)


def _broadcast_calls(
    payload: Mapping[str, Any], op: str, version: str, num_workers: int, tp_size: int
) -> list[NativeCall]:
    group = payload.get("group")
    if not isinstance(group, str) or not group:
        raise WeightSyncError(f"broadcast {op} payload needs the weight group's name in `group` (got {group!r}).")
    if op == "init":
        world_size = payload.get("world_size")
        if world_size != 1 + num_workers * tp_size:
            raise ConfigError(
                f"broadcast `world_size` is {world_size!r} but {num_workers} engines x tp_size {tp_size} + the "
                f"trainer make {1 + num_workers * tp_size} ranks; build the BroadcastSender with "
                f"world_size={1 + num_workers * tp_size}."
            )
        base = {
            "master_address": payload.get("master_addr"),
            "master_port": payload.get("master_port"),
            "world_size": world_size,
            "group_name": group,
            "backend": payload.get("backend"),
        }
        return [NativeCall("/init_weights_update_group", lambda i, url: {**base, "rank_offset": 1 + i * tp_size})]
    if op == "destroy":
        return [NativeCall("/destroy_weights_update_group", {"group_name": group})]
    if op != "update":
        raise WeightSyncError(f"broadcast payload `op` {op!r} is not init, update or destroy.")
    layout = payload.get("layout", "buckets")
    if layout not in ("tensors", "flattened"):
        raise ConfigError(
            f"broadcast payload `layout` is {layout!r}; SGLang receives 'tensors' (one broadcast per tensor) or "
            "'flattened' (its FlattenedTensorBucket): build the BroadcastSender with layout='tensors'."
        )
    calls = []
    for manifest in parse_manifests(payload.get("buckets"), payload.get("num_buckets")):
        body: dict[str, Any] = {
            "names": [e.name for e in manifest.entries],
            "dtypes": [e.dtype for e in manifest.entries],
            "shapes": [list(e.shape) for e in manifest.entries],
            "group_name": group,
            "flush_cache": False,
            "weight_version": version,
        }
        if layout == "flattened":
            body["load_format"] = LOAD_FORMAT
        calls.append(NativeCall("/update_weights_from_distributed", body))
    return calls


def starts_publish(payload: Mapping[str, Any]) -> bool:
    """Whether `payload` is the first part of a publish (engines are paused and flushed before it)."""
    return payload.get("op", "update") == "update" and payload.get("part", 0) == 0


def ends_publish(payload: Mapping[str, Any]) -> bool:
    """Whether `payload` is the last part of a publish (engines continue generating after it)."""
    return payload.get("op", "update") == "update" and payload.get("part", 0) == payload.get("num_parts", 1) - 1


async def flush_when_idle(client: EngineClient, timeout_s: float = FLUSH_TIMEOUT_S, interval_s: float = 1.0) -> None:
    """`/flush_cache` on every worker, retried until it succeeds (SGLang refuses while requests remain).

    Raises:
        EngineError: still refused after `timeout_s` (the last refusal is in the message).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await client.flush_cache()
            return
        except EngineError as exc:
            if time.monotonic() >= deadline:
                raise EngineError(f"/flush_cache still refused after {timeout_s} s: {exc}") from exc
        await asyncio.sleep(interval_s)


async def deliver_native(client: EngineClient, payload: Mapping[str, Any], *, tp_size: int = 1) -> list[Any]:
    """Carry one slime.sync payload to every worker of `client` through SGLang's own routes (see module doc).

    Returns:
        The engines' answers, one list per call, in call order.

    Raises:
        WeightSyncError: a call failed (the message names the route, the worker and SGLang's answer), or the
            payload cannot be translated.
    """
    urls = await client.worker_urls()
    calls = native_calls(payload, num_workers=len(urls), tp_size=tp_size)
    try:
        if starts_publish(payload):
            await client.pause_generation("abort")
            await flush_when_idle(client)
        answers = [await client.post_each(call.route, call.body) for call in calls]
        if ends_publish(payload):
            await client.continue_generation()
    except EngineError as exc:
        raise WeightSyncError(f"SGLang weight update (version {payload.get('version')}) failed: {exc}") from exc
    return answers
