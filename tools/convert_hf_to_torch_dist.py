"""HF -> Megatron torch_dist (the seeds' tool name; a thin wrapper):

    torchrun --nproc-per-node N tools/convert_hf_to_torch_dist.py [${MODEL_ARGS[@]}] --hf-checkpoint HF --save OUT

Same flags as `slime-convert hf-to-torch-dist` (see its --help and packages/slime-convert/README.md).
"""

from __future__ import annotations

import sys

from slime.convert.cli import main

if __name__ == "__main__":  # spawn-safe: Megatron's checkpoint saver re-imports the main module
    sys.exit(main(["hf-to-torch-dist", *sys.argv[1:]]))
