"""Finding a task's files on disk and saying clearly what is missing.

Official lists name files by a relative path or a bare name; datasets are unpacked in several shapes (class
folders or flat, split folders or not), so files are found by their lower-cased stem anywhere under the root.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from avcli.errors import UsageError
from avcli.log import get_logger

log = get_logger("tasks")

VIDEO_EXTENSIONS = {".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".ogv", ".flv", ".3gp"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff"}
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS


def require_folder(root: Path, task: str, layout: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--data-root {root}: no such folder; point it at the {task} data ({layout})")
    return root


def media_files(root: Path, extensions: set[str] = MEDIA_EXTENSIONS) -> list[Path]:
    """Every media file under `root` (recursively, hidden entries skipped, symlinks followed), sorted."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in extensions]
    return sorted(found)


def by_stem(files: list[Path]) -> dict[str, Path]:
    """Lower-cased stem → file (the first in sorted order when a stem occurs twice)."""
    index: dict[str, Path] = {}
    for path in files:
        index.setdefault(path.stem.lower(), path)
    return index


def check_present(
    task: str, root: Path, listed: list[str], missing: list[str], source: str, allow_missing: bool,
    what: str = "files",
) -> int:
    """Raise (or, with `allow_missing`, warn) when some of the `listed` files (or other `what`) named in `source`
    are not on disk; returns how many are missing."""
    if not missing:
        return 0
    found = len(listed) - len(missing)
    summary = (f"{root}: {found} of the {len(listed)} {task} {what} listed in {source} are present "
               f"(first missing: {', '.join(missing[:3])})")
    if found == 0:
        raise UsageError(f"{summary}; point --data-root at the {task} data")
    if not allow_missing:
        raise UsageError(f"{summary}; point --data-root at the complete dataset, or pass --allow-missing to "
                         f"evaluate on the {found} present (numbers then differ from the official protocol)")
    log.warning("%s; evaluating on the %d present (--allow-missing)", summary, found)
    return len(missing)


def stratified_folds(keys: list[str], labels: list[str], folds: int = 5) -> list[str]:
    """A deterministic stratified k-fold assignment ("1".."k") for data without an official split.

    Within each class, items ordered by the SHA-1 of their key (a stable shuffle that does not depend on the
    order the files were found in) are dealt round-robin to the folds, starting at a fold chosen by the SHA-1 of
    the class name: every class is spread over the folds as evenly as its size allows, small classes do not all
    pile into fold 1, and adding or removing files of one class never moves another class's files."""
    fold_of = [""] * len(keys)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(str(label), []).append(i)
    for label, members in by_class.items():
        members.sort(key=lambda i: _sha1(keys[i]))
        offset = int(_sha1(label), 16) % folds
        for rank, i in enumerate(members):
            fold_of[i] = str((offset + rank) % folds + 1)
    return fold_of


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def fold_memberships(fold: str, folds: int) -> dict[str, str]:
    """Fold `fold` of `folds`: test in split `fold`, train in the others."""
    return {str(k): "test" if str(k) == fold else "train" for k in range(1, folds + 1)}
