"""Reading a task's videos from the training copies of a catalog (`avcli probe --catalog DIR`).

A video that `avcli ingest` has already cataloged is decoded from its small transcoded copy (or, for a catalog
made with --no-transcode, from the original with the streams ingest picked) instead of the original file.
Videos are matched by their resolved path; the others are read from the originals as before.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from avcli.data.catalog import Catalog
from avcli.log import get_logger
from avcli.tasks.base import Task

log = get_logger("tasks")


def read_from_catalog(task: Task, catalog_dir: Path) -> Task:
    with Catalog(catalog_dir) as catalog:
        items = {os.path.realpath(item.path): item for item in catalog.items(status="ok")}
    videos, matched = [], 0
    for video in task.videos:
        item = items.get(os.path.realpath(video.path))
        if item is None:
            videos.append(video)
            continue
        matched += 1
        videos.append(replace(video, source=item.source, video_stream=item.video_stream,
                              audio_stream=item.audio_stream, duration_s=item.duration_s))
    log.info("%d of the %d videos of %s are read from the catalog %s", matched, len(task.videos), task.name, catalog_dir)
    if matched < len(task.videos):
        log.warning("%d videos are not in the catalog %s (or were rejected there): read from the originals",
                    len(task.videos) - matched, catalog_dir)
    return replace(task, videos=videos)
