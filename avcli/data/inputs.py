"""Which files an ingest looks at: expanding the command line's inputs, and picking one shard of them.

Folders are walked recursively in sorted order (hidden entries skipped). Symlinks are followed once: a linked
folder is walked, but a folder (or file) reached a second time through another link is not, so link cycles end
and a file linked twice is ingested once, under its real path.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Iterator

from avcli.errors import UsageError


def expand_inputs(inputs: Iterable[str], stdin: Iterable[str] | None = None) -> Iterator[tuple[Path, Path]]:
    """(real path, root) of the files named by `inputs`: files, folders, and `-` (one path per stdin line).

    `root` is the folder given on the command line (or the file's own folder): titles and dataset layouts are
    read from the path relative to it."""
    seen_files: set[str] = set()
    seen_dirs: set[str] = set()
    for raw in inputs:
        if raw == "-":
            lines = (line.rstrip("\n").rstrip("\r") for line in (stdin or ()))
            for line in lines:
                if line.strip():
                    yield from _expand_one(line, seen_files, seen_dirs)
            continue
        yield from _expand_one(raw, seen_files, seen_dirs)


def _expand_one(raw: str, seen_files: set[str], seen_dirs: set[str]) -> Iterator[tuple[Path, Path]]:
    path = Path(raw).expanduser()
    if path.is_dir():
        root = path.absolute()
        for found in _walk(path, seen_files, seen_dirs):
            yield found, root
    elif path.exists():
        real = os.path.realpath(path)
        if real not in seen_files:
            seen_files.add(real)
            yield Path(real), path.absolute().parent
    elif path.is_symlink():
        yield path.absolute(), path.absolute().parent  # a dangling link: probe rejects it, so it is accounted for
    else:
        raise UsageError(f"{raw}: no such file or folder; check the path (or pass - to read paths from stdin)")


def _walk(folder: Path, seen_files: set[str], seen_dirs: set[str]) -> Iterator[Path]:
    real = os.path.realpath(folder)
    if real in seen_dirs:
        return
    seen_dirs.add(real)
    try:
        entries = sorted(os.scandir(real), key=lambda e: e.name)
    except OSError:
        return  # an unreadable folder holds nothing we can ingest
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():  # follows a symlinked folder once (seen_dirs stops cycles)
            yield from _walk(Path(entry.path), seen_files, seen_dirs)
        elif entry.is_file() or entry.is_symlink():
            real_file = os.path.realpath(entry.path)
            if real_file not in seen_files:
                seen_files.add(real_file)
                yield Path(real_file) if entry.is_file() else Path(entry.path)


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` with 0 ≤ i < n (Slurm array jobs count from 0)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text}: expected i/n, e.g. 0/4 for the first of four shards") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text}: need 0 <= i < n, e.g. 0/4 .. 3/4")
    return index, count


def in_shard(path: Path, shard: tuple[int, int] | None) -> bool:
    """Deterministic 1/n of the inputs, by a hash of the file name.

    The name alone (not the absolute path) decides, so shards agree across machines that mount the same data
    at different places; files with the same name in different folders may land in the same shard, which only
    costs balance, not correctness.
    """
    if shard is None:
        return True
    index, count = shard
    digest = hashlib.sha1(path.name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count == index
