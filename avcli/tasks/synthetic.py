"""The synthetic world as a task: labels.csv written by the generator (class per video, split by title)."""

from __future__ import annotations

import csv
from pathlib import Path

from avcli.errors import UsageError
from avcli.media.synthetic import CLASS_NAMES
from avcli.tasks.base import Task, TaskVideo

LAYOUT = "a synthetic world (labels.csv); defaults to the recipe's catalog"


def load_synthetic(root: Path, meta: Path | None = None, allow_missing: bool = False) -> Task:
    """The world is generated whole, so nothing may be missing (`meta`, `allow_missing`: the registry's
    signature, unused)."""
    labels = Path(root) / "labels.csv"
    if not labels.is_file():
        raise UsageError(
            f"{root}: no labels.csv; point --data-root at a synthetic world "
            "(made by `avcli ingest --synthetic N --out DIR` or by pretraining the quickstart recipe)"
        )
    videos = []
    with open(labels, newline="") as fh:
        for row in csv.DictReader(fh):
            path = Path(root) / row["path"]
            videos.append(TaskVideo(str(path), int(row["class_id"]), row["split"], float(row["seconds"])))
    missing = [v.path for v in videos if not Path(v.path).exists()]
    if missing:
        raise UsageError(
            f"{root}: {len(missing)} of {len(videos)} videos listed in labels.csv are missing "
            f"(first: {', '.join(missing[:3])}); regenerate the world"
        )
    n_classes = max(v.label for v in videos) + 1
    return Task("synthetic", CLASS_NAMES[:n_classes], videos)

