"""Entry point: `python -m slime.sglang.local_server --model-path DIR ...` (see `cli`)."""

from __future__ import annotations

from slime.sglang.local_server.cli import main

if __name__ == "__main__":
    main()
