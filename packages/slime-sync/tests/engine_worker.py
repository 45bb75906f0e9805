"""A stand-in engine process for the tests: one receiver per transport, fed JSON commands on stdin.

Run as a script (`python engine_worker.py`); replies are JSON lines on stdout prefixed with `@@ ` so stray
library output cannot be mistaken for a reply. Loaded weights are kept per transport and reported as
checksums, shapes and dtypes so that the test process can check bit-exactness.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

import slime.sync as sync

_BUILDERS = {
    "shm": lambda load, a: sync.SharedMemoryReceiver(load, **a),
    "disk": lambda load, a: sync.DiskReceiver(load, **a),
    "delta": lambda load, a: sync.DeltaReceiver(load, **a),
    "broadcast": lambda load, a: sync.BroadcastReceiver(load, **a),
}


def main() -> None:
    receivers: dict[str, Any] = {}
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        transport = cmd.get("transport", "")
        reply: dict[str, Any] = {"ok": True}
        try:
            if cmd["op"] == "new":
                store = weights[transport] = {}
                receivers[transport] = _BUILDERS[transport](_loader(store), cmd.get("args", {}))
            elif cmd["op"] == "apply":
                reply["version"] = receivers[transport].apply(cmd["payload"], peer=cmd.get("peer"))
            elif cmd["op"] == "weights":
                reply["weights"] = {
                    n: [sync.tensor_checksum(t), list(t.shape), str(t.dtype)] for n, t in weights[transport].items()
                }
            elif cmd["op"] == "exit":
                break
        except Exception as exc:  # the test inspects the error text
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if transport in receivers:
            reply["held"] = receivers[transport].version
        print("@@ " + json.dumps(reply), flush=True)


def _loader(store: dict[str, torch.Tensor]):
    def load_weights(items: list[tuple[str, torch.Tensor]]) -> None:
        for name, tensor in items:
            store[name] = tensor.clone()  # the tensors are only valid during the call

    return load_weights


if __name__ == "__main__":
    main()
