"""`folder`: your own labelled media, one folder per class, optionally inside split folders.

`<root>/<class>/<file>` (no split folders: five deterministic stratified folds) or `<root>/{train,test}/<class>/
<file>` (or `val/`). Class indices: the class names in alphabetical order. Sound files only make an audio task.
"""

from __future__ import annotations

from pathlib import Path

from avcli.data.layouts import FolderLayout
from avcli.errors import UsageError
from avcli.tasks.base import Task
from avcli.tasks.files import media_files, require_folder
from avcli.tasks.labelled_files import labelled_files_task

LAYOUT = "<root>/<class>/<file> or <root>/{train,test}/<class>/<file>"


def load_folder(root: Path, meta: Path | None = None, allow_missing: bool = False) -> Task:
    root = require_folder(root, "folder", LAYOUT)
    layout = FolderLayout(root)
    entries = []
    for path in media_files(root):
        annotation = layout.annotate(path)
        if annotation["label"] is not None:
            entries.append((path, annotation["label"], annotation["split"]))
    if not entries:
        raise UsageError(f"{root}: no media files in class folders; lay the data out as {LAYOUT}")
    return labelled_files_task("folder", root, entries)
