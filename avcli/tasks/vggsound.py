"""VGG-Sound: ~200k ten-second YouTube clips, 309 sound classes, an official train/test split (`vggsound.csv`,
headerless `youtube_id,start_seconds,label,split`). Clips vanish from YouTube, so every copy of the dataset is
incomplete: the task is the listed clips present on disk, and the number missing is reported with each result.

Data root: clips named `<youtube_id>_<start:06d>.mp4` (any folder shape); `vggsound.csv` in the root, beside it,
or given with --task-meta (the official `test.csv` alone gives a test split only). Class indices: the labels in
alphabetical order.
"""

from __future__ import annotations

from pathlib import Path

from avcli.data.layouts import VGGSoundLayout
from avcli.errors import UsageError
from avcli.log import get_logger
from avcli.tasks.base import Task, TaskVideo
from avcli.tasks.files import MEDIA_EXTENSIONS, media_files, require_folder

log = get_logger("tasks")
LAYOUT = "<root>/<youtube_id>_<start:06d>.mp4 (any folders), vggsound.csv in or beside the root"


def load_vggsound(root: Path, meta: Path | None = None, allow_missing: bool = False) -> Task:
    root = require_folder(root, "VGG-Sound", LAYOUT)
    table = meta or next((p for p in (root / "vggsound.csv", root.parent / "vggsound.csv") if p.is_file()), None)
    if table is None:
        raise UsageError(f"{root}: no vggsound.csv in or beside the data root; pass --task-meta vggsound.csv")
    layout = VGGSoundLayout(root, table)
    if not layout.rows:
        raise UsageError(f"{table}: no clips listed; pass the official vggsound.csv")
    classes = sorted({label for label, _ in layout.rows.values()})
    index = {label: i for i, label in enumerate(classes)}
    videos, seen = [], set()
    for path in media_files(root, MEDIA_EXTENSIONS):
        key = layout.key_of(path)
        if key is None or key not in layout.rows or key in seen:
            continue
        seen.add(key)
        label, split = layout.rows[key]
        videos.append(TaskVideo(str(path), index[label], "test" if split == "test" else "train"))
    if not videos:
        raise UsageError(f"{root}: none of the {len(layout.rows)} clips listed in {table} is here; "
                         "point --data-root at the VGG-Sound clips (<youtube_id>_<start:06d>.mp4)")
    n_missing = len(layout.rows) - len(videos)
    if n_missing:
        log.warning("VGG-Sound: %d of the %d clips listed in %s are present, %d missing (usual for VGG-Sound)",
                    len(videos), len(layout.rows), table, n_missing)
    return Task("vggsound", classes, videos, n_missing=n_missing)
