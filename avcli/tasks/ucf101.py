"""UCF101: 101 action classes, three official train/test splits (`ucfTrainTestlist/`, CRLF lines).

Data root: `<root>/<Class>/v_<Class>_gXX_cYY.avi` (or the .avi files flat, or any folder shape: files are found
by name). The split lists are looked for in `<root>/ucfTrainTestlist`, beside the root, or at --task-meta.
Class indices are classInd.txt's, from 0.
"""

from __future__ import annotations

from pathlib import Path

from avcli.data.layouts import UCF101Layout
from avcli.errors import UsageError
from avcli.tasks.base import FinetuneSchedule, Task, TaskVideo, with_memberships
from avcli.tasks.files import VIDEO_EXTENSIONS, by_stem, check_present, media_files, require_folder

LAYOUT = "<root>/<Class>/v_<Class>_gXX_cYY.avi, split lists in <root>/ucfTrainTestlist or beside the root"


def load_ucf101(root: Path, meta: Path | None = None, allow_missing: bool = False) -> Task:
    root = require_folder(root, "UCF101", LAYOUT)
    layout = UCF101Layout(root, meta)
    classes = [name for name, _ in sorted(layout.classes.values(), key=lambda c: c[1])]
    return listed_videos_task("ucf101", "UCF101", root, layout, classes, allow_missing,
                              schedule=FinetuneSchedule(epochs=16, milestones=(6, 10, 14)))


def listed_videos_task(name, title, root: Path, layout, classes: list[str], allow_missing: bool, **fields) -> Task:
    """A task of the videos an official-splits layout lists (UCF101, HMDB51), each with its three memberships."""
    files = by_stem(media_files(root, VIDEO_EXTENSIONS))
    listed = sorted(layout.splits)
    missing = [layout.entries[stem] for stem in listed if stem not in files]
    n_missing = check_present(title, root, listed, missing, str(layout.meta), allow_missing)
    index = {label: i for i, label in enumerate(classes)}
    videos = []
    for stem in listed:
        if stem not in files:
            continue
        annotation = layout.annotate(files[stem])
        if annotation["label"] not in index:
            raise UsageError(f"{files[stem]}: class {annotation['label']!r} is not in {layout.meta}; "
                             f"use the official split files of {title}")
        splits = annotation["extra"]["splits"]
        videos.append(TaskVideo(str(files[stem]), index[annotation["label"]], "", splits=splits))
    split_ids = tuple(sorted({s for v in videos for s in v.splits}, key=int))
    return with_memberships(name, classes, videos, split_ids, n_missing=n_missing, **fields)
