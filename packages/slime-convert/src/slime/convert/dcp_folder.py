"""Read a torch.distributed.checkpoint folder (`.metadata` + `__*.distcp`) on one process into plain tensors.

Both Megatron's torch_dist checkpoints and slime.fsdp's checkpoints are DCP folders. `DcpFolder` lists the
tensors with their global shapes and dtypes from `.metadata` (no data read), and loads chosen keys as full,
unsharded CPU tensors, whatever the world size that wrote them; DCP assembles the shards. No process group,
no Megatron and no model are needed. Non-tensor entries (Megatron's `_extra_state`, RNG states, optimizer
objects) are not listed. It writes nothing.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch

from slime.types import DataError

_SINGLE_PROCESS_NOTE = r"torch\.distributed is .*assuming the intent is to load in a single process"


class DcpFolder:
    """One DCP checkpoint folder; `flag` names the command-line flag it came from, for error messages."""

    def __init__(self, path: str | Path, *, flag: str = "--input-dir") -> None:
        from torch.distributed.checkpoint import FileSystemReader

        self.path = Path(path)
        if not (self.path / ".metadata").is_file():
            raise DataError(
                f"{flag} {str(self.path)!r} is not a torch.distributed.checkpoint folder (no .metadata); point it "
                "at an iteration folder such as .../iter_0000010."
            )
        self._reader = FileSystemReader(str(self.path))
        self.metadata = self._reader.read_metadata()

    @functools.cached_property
    def _infos(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        infos = {}
        for key, meta in self.metadata.state_dict_metadata.items():
            size = getattr(meta, "size", None)
            if size is not None:
                infos[key] = (tuple(size), meta.properties.dtype)
        return infos

    def tensor_infos(self, prefix: str = "") -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Tensor key -> (global shape, dtype) for every tensor whose key starts with `prefix`."""
        return {key: info for key, info in self._infos.items() if key.startswith(prefix)}

    def load(self, keys: Iterable[str]) -> dict[str, torch.Tensor]:
        """The full tensors of `keys`, on the CPU, in their stored dtype."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemReader

        state = {key: torch.empty(self._infos[key][0], dtype=self._infos[key][1]) for key in keys}
        if not state:
            return {}
        with warnings.catch_warnings():
            # Loading on one process is the point here, not an accident worth a warning.
            warnings.filterwarnings("ignore", message=_SINGLE_PROCESS_NOTE, category=UserWarning)
            dcp.load(state, storage_reader=FileSystemReader(str(self.path)), no_dist=True)
        return state
