"""`write_config_and_assets`: the non-weight files of a converted HF folder (config.json and the tokenizer files).

The shards themselves are written by `slime.sync.shard_writer.ShardWriter`. It does not make the folder atomic
(`atomic_output`) and does not convert names.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from slime.convert.hf_checkpoint import HFCheckpoint


def write_config_and_assets(origin: HFCheckpoint, folder: Path, *, vocab_size: int | None = None) -> None:
    """Copy config.json (with `vocab_size` replaced when given and different) and every asset file of `origin`."""
    config = origin.config_dict()
    target = config.get("text_config", config) if "vocab_size" not in config else config
    if vocab_size is not None and target.get("vocab_size") != vocab_size:
        target["vocab_size"] = vocab_size
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    else:
        shutil.copy2(origin.path / "config.json", folder / "config.json")
    for asset in origin.asset_files():
        shutil.copy2(asset, folder / asset.name)
