"""The versioned handshake every transport shares: payload header, version rules, and the receiver skeleton.

Every payload is a JSON-ready dict carrying `format`, `transport`, `version` and, when a publish is split to
bound memory, `part` / `num_parts`. `VersionedReceiver.apply` enforces the rules: a peer must be allowed
(see `slime.sync.peers`), an older version is refused with `WeightSyncError`, the version it already holds
is a no-op that returns it, and a newer one is staged into fresh tensors and fully validated before the
engine's `load_weights` sees anything, so a bad payload leaves the previous weights untouched. Subclasses
only say how to stage (`_stage`). This module moves no data itself.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, ClassVar

import torch

from slime.sync.peers import check_peer
from slime.sync.tensor_bytes import tensor_checksum, verify_checksums
from slime.types import ContractError, WeightSyncError

FORMAT = "slime.sync/1"
"""Wire-format tag; a receiver refuses payloads of another format."""

LoadWeights = Callable[[list[tuple[str, torch.Tensor]]], None]
"""The engine's model loader: copies the given `(hf_name, tensor)` pairs into the live model."""

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class PayloadHeader:
    """The fields every payload has. Part `part` of `num_parts` (0 of 1 for an unsplit publish)."""

    transport: str
    version: int
    part: int = 0
    num_parts: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The header fields of a payload."""
        return {
            "format": FORMAT,
            "transport": self.transport,
            "version": self.version,
            "part": self.part,
            "num_parts": self.num_parts,
        }

    @classmethod
    def parse(cls, payload: Any, transport: str) -> PayloadHeader:
        """Read and check the header of `payload` for a receiver of `transport`; raises `WeightSyncError`."""
        if not isinstance(payload, Mapping):
            raise WeightSyncError(f"a weight payload must be a JSON object, got {type(payload).__name__}.")
        if payload.get("format") != FORMAT or payload.get("transport") != transport:
            raise WeightSyncError(
                f"payload format/transport {payload.get('format')!r}/{payload.get('transport')!r} is not "
                f"{FORMAT!r}/{transport!r}; was it sent to the wrong receiver?"
            )
        fields = {k: payload.get(k, d) for k, d in (("version", None), ("part", 0), ("num_parts", 1))}
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in fields.values()):
            raise WeightSyncError(f"payload version/part/num_parts must be integers, got {fields}.")
        header = cls(transport=transport, **fields)
        if header.version < 0 or not 0 <= header.part < header.num_parts:
            raise WeightSyncError(f"payload header out of range: {header}.")
        return header


def collect_named_tensors(named_tensors: Iterable[tuple[str, Any]]) -> list[tuple[str, torch.Tensor]]:
    """Materialise the sender's input, checking it is `(unique str name, tensor)` pairs."""
    out: list[tuple[str, torch.Tensor]] = []
    seen: set[str] = set()
    for item in named_tensors:
        name, tensor = item
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise ContractError(f"weights must be (str, torch.Tensor) pairs, got ({name!r}, {type(tensor).__name__}).")
        if name in seen:
            raise ContractError(f"tensor name {name!r} appears twice in one publish.")
        seen.add(name)
        out.append((name, tensor.detach()))
    return out


def check_newer(last: int | None, version: int) -> None:
    """A sender refuses to publish a version that is not newer than its last one."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ContractError(f"version must be a non-negative int, got {version!r}.")
    if last is not None and version <= last:
        raise WeightSyncError(f"version {version} is not newer than the last published version {last}.")


def checksums_of(tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, str]:
    """Per-tensor checksums for a payload's `checksums` field (debugging; costs a pass over every byte)."""
    return {name: tensor_checksum(t) for name, t in tensors}


def publish_stats(nbytes: int, started: float, **extra: float) -> dict[str, float]:
    """The figures `WeightSender.publish` returns: bytes, seconds, GB/s and transport-specific extras."""
    seconds = max(time.perf_counter() - started, 1e-9)
    return {"bytes": float(nbytes), "seconds": seconds, "gb_per_s": nbytes / seconds / 1e9, **extra}


class VersionedReceiver:
    """Engine side of a transport: version rules, peer check, staging and the single `load_weights` call.

    Args:
        load_weights: the engine's loader. It gets fresh tensors (or views of a just-received buffer) that stay
            valid only during the call, so it must copy them into the model, as model loaders do.
        verify_checksums: verify the payload's per-tensor `checksums` (the sender must publish them); for
            debugging, since it reads every byte once more.
        trusted_peers: hosts besides loopback whose payloads are accepted (the configured group); ignored by
            transports that carry memory handles, which accept loopback only.
    """

    transport: ClassVar[str] = ""
    loopback_only: ClassVar[bool] = False

    def __init__(
        self, load_weights: LoadWeights, *, verify_checksums: bool = False, trusted_peers: Collection[str] = ()
    ) -> None:
        self._load_weights = load_weights
        self._verify = verify_checksums
        self._trusted = () if self.loopback_only else frozenset(trusted_peers)
        self._version = -1
        self._pending: tuple[int, int] | None = None  # (version, next part) of a split publish in progress
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        """The version fully applied (-1 before the first)."""
        return self._version

    @property
    def pending_version(self) -> int | None:
        """A split publish whose first parts were loaded but not its last (its weights are then mixed)."""
        return None if self._pending is None else self._pending[0]

    def apply(self, payload: Mapping[str, Any], peer: str | None = None) -> int:
        """Apply one payload and return the version held afterwards.

        Args:
            payload: a dict produced by the matching sender (after a JSON round trip).
            peer: the sender's address as the engine's server saw it (`request.client.host`); None for an
                in-process call. It must be loopback (or a trusted peer, for handle-free transports).

        Raises:
            WeightSyncError: peer not allowed, payload garbled or truncated, version older than held, checksum
                mismatch, or the loader failed. In every case but the last the model was not touched.
        """
        check_peer(peer, self._trusted, what=f"{self.transport} weight payloads")
        header = PayloadHeader.parse(payload, self.transport)
        with self._lock:
            if self._control(payload):
                return self._version
            if header.version <= self._version:
                self._discard(header, payload)
                if header.version < self._version:
                    raise WeightSyncError(
                        f"refusing weight version {header.version}: this receiver already holds {self._version}."
                    )
                logger.info("weight version %d already applied; nothing to do", header.version)
                return self._version
            try:
                self._check_part(header)
            except WeightSyncError:
                self._discard(header, payload)
                raise
            staged = self._stage(header, payload)
            if self._verify:
                verify_checksums(staged, payload.get("checksums") or {})
            try:
                self._load_weights(staged)
            except Exception as exc:
                raise WeightSyncError(f"load_weights failed for version {header.version}: {exc}") from exc
            del staged
            self._loaded(header, payload)
            self._advance(header)
            return self._version

    def _check_part(self, header: PayloadHeader) -> None:
        # Part 0 always (re)starts a version, so a sender retrying after a failure is not locked out.
        if header.part == 0 or self._pending == (header.version, header.part):
            return
        expected = self._pending[1] if self._pending is not None and self._pending[0] == header.version else 0
        raise WeightSyncError(
            f"version {header.version}: got part {header.part} of {header.num_parts}, expected part {expected}."
        )

    def _advance(self, header: PayloadHeader) -> None:
        if header.part + 1 == header.num_parts:
            self._version, self._pending = header.version, None
            logger.info("applied weight version %d", header.version)
        else:
            self._pending = (header.version, header.part + 1)

    def _stage(self, header: PayloadHeader, payload: Mapping[str, Any]) -> list[tuple[str, torch.Tensor]]:
        """Receive / map / read the payload's tensors and validate them; must not touch the model."""
        raise NotImplementedError

    def _discard(self, header: PayloadHeader, payload: Mapping[str, Any]) -> None:
        """Called for a payload that will not be applied (transports whose peers block on us drain it here)."""

    def _control(self, payload: Mapping[str, Any]) -> bool:
        """Handle a control payload (no weights); return True when `payload` was one."""
        return False

    def _loaded(self, header: PayloadHeader, payload: Mapping[str, Any]) -> None:
        """Called after `load_weights` succeeded, before the version advances."""
