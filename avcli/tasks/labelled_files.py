"""A task from a list of (file, label, split) entries: what the `folder` and `csv` tasks have in common.

Splits: "train"/"test" ("val" is the test split when no file is in "test", else unused); fold numbers ("1".."k":
fold k is the test set of split k); or none at all, and then five deterministic stratified folds
(files.stratified_folds). Class indices: the labels in alphabetical order.
"""

from __future__ import annotations

from pathlib import Path

from avcli.errors import UsageError
from avcli.tasks.base import Task, TaskVideo, with_memberships
from avcli.tasks.files import AUDIO_EXTENSIONS, fold_memberships, stratified_folds

GENERATED_FOLDS = 5


def labelled_files_task(name: str, root: Path, entries: list[tuple[Path, str, str | None]], n_missing: int = 0) -> Task:
    classes = sorted({label for _, label, _ in entries})
    index = {label: i for i, label in enumerate(classes)}
    labels = [index[label] for _, label, _ in entries]
    splits = [split.strip().lower() if split else None for _, _, split in entries]
    audio_only = all(path.suffix.lower() in AUDIO_EXTENSIONS for path, _, _ in entries)
    fields = {"audio_only": audio_only, "n_missing": n_missing}
    if all(split is None for split in splits):
        keys = [_key(path, root) for path, _, _ in entries]
        folds = stratified_folds(keys, [label for _, label, _ in entries], GENERATED_FOLDS)
        videos = [TaskVideo(str(path), label, "", splits=fold_memberships(fold, GENERATED_FOLDS))
                  for (path, _, _), label, fold in zip(entries, labels, folds)]
        split_ids = tuple(str(k) for k in range(1, GENERATED_FOLDS + 1))
        return with_memberships(name, classes, videos, split_ids, notes={"folds": "generated"}, **fields)
    if any(split is None for split in splits):
        first = next(path for (path, _, _), split in zip(entries, splits) if split is None)
        raise UsageError(f"{first}: has no split while other files have one; give every file a split or none")
    if all(split.isdigit() for split in splits):
        split_ids = tuple(sorted(set(splits), key=int))
        videos = [TaskVideo(str(path), label, "", splits={k: "test" if k == split else "train" for k in split_ids})
                  for (path, _, _), label, split in zip(entries, labels, splits)]
        return with_memberships(name, classes, videos, split_ids, **fields)
    unknown = sorted(set(splits) - {"train", "test", "val", "validation"})
    if unknown:
        raise UsageError(f"{root}: unknown split {unknown[0]!r}; use train/test (or val), or fold numbers 1..k")
    test_name = "test" if "test" in splits else "val"
    membership = {"train": "train", test_name: "test"}
    videos = [TaskVideo(str(path), label, membership[split.replace("validation", "val")])
              for (path, _, _), label, split in zip(entries, labels, splits)
              if split.replace("validation", "val") in membership]
    return Task(name, classes, videos, **fields)


def _key(path: Path, root: Path) -> str:
    """The file's path relative to the root (so the generated folds do not depend on where the data lives)."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).name
