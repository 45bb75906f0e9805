"""slime's `train_async.py`: rollout of step n+1 overlaps training on step n (not with --colocate)."""

import sys

from slime.train.cli import main_async

if __name__ == "__main__":
    sys.exit(main_async())
