"""Cached frozen features, one safetensors file per (checkpoint, task, split, part, clip plan, feature).

The key hashes everything the numbers depend on: the checkpoint (its path, size and mtime, or "random" and the
recipe), the recipe's clip settings, the task, its data root and the exact list of files and labels, the split,
the clip plan and window, and the catalog the clips are read from. A changed input is a different key, never a
stale hit; files are written to a temporary name and renamed, so an interrupted run leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

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
    """`get(key, names)` → the cached tensors (or None for each missing), `put(key, tensors)`. `folder=None`
    caches nothing (--no-cache)."""

    def __init__(self, folder: Path | None, identity: dict):
        self.folder = Path(folder) if folder is not None else None
        self.identity = identity
        self.hits = 0

    def key(self, **fields) -> str:
        text = json.dumps({**self.identity, **fields}, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:20]

    def _path(self, key: str, name: str) -> Path:
        return self.folder / f"{key}-{name.replace('.', '_')}.safetensors"

    def get(self, key: str, name: str) -> torch.Tensor | None:
        if self.folder is None or not self._path(key, name).is_file():
            return None
        try:
            tensor = load_file(str(self._path(key, name)))["features"]
        except Exception as exc:  # a damaged entry is recomputed, not fatal
            log.warning("ignoring unreadable cache entry %s (%s)", self._path(key, name), exc)
            return None
        self.hits += 1
        return tensor

    def put(self, key: str, name: str, tensor: torch.Tensor, about: dict) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(key, name)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        metadata = {key: str(value) for key, value in {**self.identity, **about, "feature": name}.items()}
        save_file({"features": tensor.contiguous()}, str(partial), metadata=metadata)
        os.replace(partial, path)
