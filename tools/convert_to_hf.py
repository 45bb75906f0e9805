"""Any Megatron checkpoint -> HF through the trainer's weight export (the seeds' tool name; a wrapper):

    torchrun --nproc-per-node TPxPP tools/convert_to_hf.py --load CKPT --output-dir OUT ...training args

Same flags as `slime-convert megatron-to-hf` (see its --help and packages/slime-convert/README.md).
"""

from __future__ import annotations

import sys

from slime.convert.cli import main

if __name__ == "__main__":  # spawn-safe: Megatron's checkpoint saver re-imports the main module
    sys.exit(main(["megatron-to-hf", *sys.argv[1:]]))
