"""`python -m slime.convert COMMAND ...` (what torchrun runs: `torchrun --nproc-per-node N -m slime.convert ...`)."""

from __future__ import annotations

import sys

from slime.convert.cli import main

if __name__ == "__main__":  # spawn-safe: dist_checkpointing's helper process re-imports the main module
    sys.exit(main())
