"""The task of the videos an official three-splits layout lists (UCF101, HMDB51; avcli.data.layouts parses
the files), each video with its membership of every split."""

from __future__ import annotations

from pathlib import Path

from avcli.errors import UsageError
from avcli.tasks.base import Task, TaskVideo, with_memberships
from avcli.tasks.files import VIDEO_EXTENSIONS, by_stem, check_present, media_files


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
