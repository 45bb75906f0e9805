"""slime's `train.py`: the synchronous loop (`ray job submit ... -- python3 train.py <slime flags>`)."""

import sys

from slime.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
