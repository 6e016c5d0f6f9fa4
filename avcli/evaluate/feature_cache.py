"""Cached frozen features, one entry per (checkpoint, task, split, part, clip plan, feature): a folder
`KEY-NAME/` of safetensors shards written as extraction proceeds (avcli.evaluate.feature_shards).

The key hashes everything the numbers depend on: the checkpoint (its path, size and mtime, or "random" and the
recipe), the recipe's clip settings, the task, its data root and the exact list of files and labels, the split,
the clip plan and window, and the catalog the clips are read from. A changed input is a different key, never a
stale hit. Only a complete entry is a hit; an interrupted one is resumed after its last whole shard (each shard
and the manifest are written to a temporary name and renamed, so no half-written shard is ever listed).

Earlier versions wrote one file per entry, `KEY-NAME.safetensors`, under the same key: such a file is still read
(a hit, streamed in slices), since the key and the numbers are unchanged, so an existing cache is not recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from avcli.evaluate.feature_shards import ShardedExtraction, SingleFileFeature, read_complete
from avcli.log import get_logger

log = get_logger("probe")


def default_cache_dir() -> Path:
    """$AVCLI_CACHE_DIR, else ~/.cache/avcli/features (for checkpoints outside a run directory)."""
    if os.environ.get("AVCLI_CACHE_DIR"):
        return Path(os.environ["AVCLI_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "avcli" / "features"


def checkpoint_identity(encoders) -> dict:
    if encoders.checkpoint == "random":
        return {"checkpoint": "random", "recipe": encoders.recipe_hash}
    weights = Path(encoders.checkpoint) / "encoders.safetensors"
    stat = weights.stat()
    return {"checkpoint": str(Path(encoders.checkpoint).resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns,
            "recipe": encoders.recipe_hash}


class FeatureCache:
    """`get(key, name)` → the cached feature (a ShardedFeature, or a SingleFileFeature of the earlier format), or
    None unless complete; `writer(key, names, about)` → where an extraction of those features writes its shards
    (None: nothing is cached). `folder=None` caches nothing (--no-cache): features are then held in memory."""

    def __init__(self, folder: Path | None, identity: dict):
        self.folder = Path(folder) if folder is not None else None
        self.identity = identity
        self.hits = 0

    def key(self, **fields) -> str:
        text = json.dumps({**self.identity, **fields}, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:20]

    def _folder(self, key: str, name: str) -> Path:
        return self.folder / f"{key}-{name.replace('.', '_')}"

    def _single_file(self, key: str, name: str) -> Path:
        return self.folder / f"{key}-{name.replace('.', '_')}.safetensors"

    def get(self, key: str, name: str):
        if self.folder is None:
            return None
        found = read_complete(self._folder(key, name))
        if found is None and self._single_file(key, name).is_file():
            try:
                found = SingleFileFeature(self._single_file(key, name))
            except Exception as exc:  # a damaged entry is recomputed, not fatal
                log.warning("ignoring unreadable cache entry %s (%s)", self._single_file(key, name), exc)
        if found is not None:
            self.hits += 1
        return found

    def writer(self, key: str, names, about: dict) -> ShardedExtraction | None:
        if self.folder is None:
            return None
        return ShardedExtraction({name: self._folder(key, name) for name in sorted(names)},
                                 {**self.identity, **about})

    def put(self, key: str, name: str, tensor: torch.Tensor, about: dict) -> None:
        """A feature computed elsewhere (V×K×D), cached as the extraction caches it."""
        writer = self.writer(key, [name], about)
        if writer is None:
            return
        writer.begin(tensor.shape[0], tensor.shape[1], 1)
        writer.add(0, {name: tensor.float()})
        writer.finish()
