"""A trainer process that gets killed mid-publish: publishes version 1, then stalls inside version 2.

Usage: `python sender_worker.py disk DIRECTORY` or `python sender_worker.py broadcast WORLD_SIZE`. Prints each
payload as a `@@ {json}` line (the test relays them to the engines), then `@@ "stalled"` once version 2 is half
written (disk: its first safetensors file is in the hidden temporary folder; broadcast: its first bucket was
broadcast), and sleeps until killed.
"""

from __future__ import annotations

import json
import sys
import time

import torch

import slime.sync.broadcast as broadcast
import slime.sync.disk as disk


def _stall_after_first(module, attr: str) -> None:
    real = getattr(module, attr)
    calls = 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 2:
            print('@@ "stalled"', flush=True)
            time.sleep(3600)
        return real(*args, **kwargs)

    setattr(module, attr, wrapper)


def main(mode: str, arg: str) -> None:
    weights = {f"w{i}": torch.full((64,), float(i), dtype=torch.bfloat16) for i in range(6)}

    def deliver(payload: dict) -> None:
        print("@@ " + json.dumps(payload), flush=True)

    if mode == "disk":
        sender = disk.DiskSender(deliver, arg, bucket_bytes=256)
        sender.publish(weights.items(), 1)
        _stall_after_first(disk, "save_file")
    else:
        sender = broadcast.BroadcastSender(deliver, world_size=int(arg), bucket_bytes=256, timeout_s=60)
        sender.publish(weights.items(), 1)
        _stall_after_first(broadcast, "flatten_bucket")
    sender.publish(((n, t + 1) for n, t in weights.items()), 2)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
