"""A private torch.distributed group for weight transfer: explicit TCP rendezvous, gloo (CPU) or NCCL (GPU).

The group is built from a `TCPStore` and a backend object directly, never through `init_process_group`, so
it neither needs nor disturbs the default group that the trainer (Megatron, FSDP) or the engine (SGLang's
tensor parallelism) already has. Rank 0 hosts the store; `master_port=0` lets the OS pick a free port, which
`WeightGroup.host_store` reports before anyone joins. Only broadcast is offered, since that is all weight
sync needs. Every wait is bounded by the group's timeout, so a dead peer turns into an error, not a hang.
The store keys and the start-up handshake are those of a torch group made from a `tcp://` rendezvous plus
`_new_process_group_helper`, which is how SGLang's `init_custom_process_group` (and OpenRLHF's, and slime's)
makes its weight-update group, so an SGLang engine joins our rank 0 unchanged (see `c10d_group_store`).
"""

from __future__ import annotations

import datetime

import torch
import torch.distributed as dist

from slime.sync.peers import is_loopback_peer
from slime.types import ConfigError, WeightSyncError

BACKENDS = ("gloo", "nccl")


def host_store(master_addr: str, master_port: int, world_size: int, timeout_s: float) -> dist.TCPStore:
    """Rank 0's rendezvous store (port 0: any free port; read it back from `.port`)."""
    return dist.TCPStore(
        master_addr,
        master_port,
        world_size,
        is_master=True,
        timeout=datetime.timedelta(seconds=timeout_s),
        wait_for_workers=False,
    )


class WeightGroup:
    """Ranks 0 (the trainer) .. world_size-1 (engine ranks) joined for broadcasting weight buckets.

    Args:
        backend: "gloo" (CPU tensors) or "nccl" (CUDA tensors; call `torch.cuda.set_device` first).
        master_addr / master_port: where rank 0's store listens.
        rank / world_size: this member's rank and the group size.
        group_name: separates several groups that share one store.
        timeout_s: bound on the rendezvous and on each broadcast.
        store: rank 0 passes the store it already hosts (`host_store`); other ranks connect to it.
    """

    def __init__(
        self,
        *,
        backend: str,
        master_addr: str,
        master_port: int,
        rank: int,
        world_size: int,
        group_name: str,
        timeout_s: float,
        store: dist.Store | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend={backend!r} must be one of {BACKENDS} (gloo on CPU, nccl on GPU).")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank} must be in [0, world_size={world_size}).")
        timeout = datetime.timedelta(seconds=timeout_s)
        try:
            if store is None:
                store = dist.TCPStore(master_addr, master_port, world_size, is_master=False, timeout=timeout)
            self._store = store
            prefixed = c10d_group_store(store, group_name, backend)
            self._backend = _make_backend(backend, prefixed, rank, world_size, timeout, master_addr)
        except (RuntimeError, ValueError) as exc:  # torch raises DistStoreError / DistBackendError (RuntimeErrors)
            raise WeightSyncError(
                f"cannot join weight group {group_name!r} at {master_addr}:{master_port} as rank {rank}/{world_size} "
                f"({backend}): {exc}"
            ) from exc
        self.backend, self.rank, self.world_size = backend, rank, world_size

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> None:
        """Broadcast `tensor` from `src` in place; waits until this rank's part is done."""
        opts = dist.BroadcastOptions()
        opts.rootRank, opts.rootTensor = src, 0
        try:
            self._backend.broadcast([tensor], opts).wait()
        except RuntimeError as exc:
            raise WeightSyncError(f"weight broadcast failed on rank {self.rank}: {exc}") from exc

    def close(self, *, broken: bool = False) -> None:
        """Tear the group down (NCCL communicators are freed); safe to call twice.

        `broken=True` after a failed collective: abort instead of a clean shutdown, which could wait on dead peers.
        """
        backend = getattr(self, "_backend", None)
        self._backend = None
        method = getattr(backend, "abort" if broken else "shutdown", None)
        if method is not None:
            try:
                method()
            except RuntimeError:
                pass  # already torn down by the failure: nothing left to release
        self._store = None


def c10d_group_store(store: dist.Store, group_name: str, backend: str) -> dist.Store:
    """The view of `store` that torch gives the backend of group `group_name` created the SGLang way.

    SGLang's `init_custom_process_group(backend, init_method="tcp://addr:port", world_size, rank, group_name)`
    wraps the rendezvous store in `PrefixStore(group_name)`; torch's `_new_process_group_helper` adds
    `PrefixStore(f"{group_name}/")` for the group and `PrefixStore(f"{device}/")` for its one backend
    (`cpu` for gloo, `cuda` for nccl). Every rank must see the same keys, so ours nests the same three.
    """
    device = "cpu" if backend == "gloo" else "cuda"
    return dist.PrefixStore(f"{device}/", dist.PrefixStore(f"{group_name}/", dist.PrefixStore(group_name, store)))


def _make_backend(
    backend: str, store: dist.Store, rank: int, world_size: int, timeout: datetime.timedelta, master_addr: str
) -> dist.Backend:
    if backend == "gloo":
        opts = dist.ProcessGroupGloo._Options()
        # Bind gloo to loopback when the whole group is local; its default resolves the hostname, which may not.
        device = (
            dist.ProcessGroupGloo.create_device(hostname="127.0.0.1")
            if is_loopback_peer(master_addr)
            else dist.ProcessGroupGloo.create_default_device()
        )
        opts._devices = [device]
        opts._timeout = timeout
        gloo = dist.ProcessGroupGloo(store, rank, world_size, opts)
        gloo._set_sequence_number_for_group()  # as _new_process_group_helper does; peers wait for rank 0's key
        return gloo
    if not dist.is_nccl_available():
        raise ConfigError("backend='nccl' needs a CUDA build of torch; use 'gloo' on CPU.")
    opts = dist.ProcessGroupNCCL.Options()
    opts.is_high_priority_stream = False  # torch's default for a new group, as SGLang's side gets
    opts._timeout = timeout
    nccl = dist.ProcessGroupNCCL(store, rank, world_size, opts)
    nccl._set_sequence_number_for_group()  # as init_process_group does; a store collective over all ranks
    return nccl
