"""slime.fsdp DCP checkpoint -> HF (the seeds' tool name; a thin wrapper):

    python tools/convert_fsdp_to_hf.py --input-dir CKPT/iter_xxx --output-dir OUT --origin-hf-dir HF

Same flags as `slime-convert dcp-to-hf` (see its --help and packages/slime-convert/README.md).
"""

from __future__ import annotations

import sys

from slime.convert.cli import main

if __name__ == "__main__":  # spawn-safe: Megatron's checkpoint saver re-imports the main module
    sys.exit(main(["dcp-to-hf", *sys.argv[1:]]))
