"""A trainer process that gets killed mid-publish: publishes version 1, then stalls inside version 2.

Usage: `python sender_worker.py DIRECTORY`. Prints each payload as a `@@ {json}` line, then `@@ "stalled"` once
version 2 has written its first safetensors file into the hidden temporary folder, and sleeps until killed.
"""

from __future__ import annotations

import json
import sys
import time

import torch

import slime.sync.disk as disk


def main(directory: str) -> None:
    weights = {f"w{i}": torch.full((64,), float(i), dtype=torch.bfloat16) for i in range(6)}
    sender = disk.DiskSender(lambda p: print("@@ " + json.dumps(p), flush=True), directory, bucket_bytes=256)
    sender.publish(weights.items(), 1)
    real_save = disk.save_file
    calls = 0

    def save_then_stall(*args, **kwargs):
        nonlocal calls
        real_save(*args, **kwargs)
        calls += 1
        if calls == 1:
            print('@@ "stalled"', flush=True)
            time.sleep(3600)

    disk.save_file = save_then_stall
    sender.publish(((n, t + 1) for n, t in weights.items()), 2)


if __name__ == "__main__":
    main(sys.argv[1])
