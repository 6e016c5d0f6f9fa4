"""Kinetics-400: class folders under `train/` and `val/` (the evaluation split; a `test/` folder is used when
there is no `val/`). Class indices: the order of the label map (`label_map_k400.txt`, one class a line) when it
is in or beside the root or given with --task-meta, else the class folders in alphabetical order.
"""

from __future__ import annotations

from pathlib import Path

from avcli.data.layouts import KineticsLayout
from avcli.errors import UsageError
from avcli.tasks.base import Task, TaskVideo
from avcli.tasks.files import VIDEO_EXTENSIONS, check_present, media_files, require_folder

LAYOUT = "<root>/{train,val}/<class>/<youtube_id>_<start>_<end>.mp4, label_map_k400.txt in or beside the root"
LABEL_MAP = "label_map_k400.txt"


def load_kinetics400(root: Path, meta: Path | None = None, allow_missing: bool = False) -> Task:
    root = require_folder(root, "Kinetics-400", LAYOUT)
    label_map = meta or next((p for p in (root / LABEL_MAP, root.parent / LABEL_MAP) if p.is_file()), None)
    layout = KineticsLayout(root, label_map)
    annotated = []
    for path in media_files(root, VIDEO_EXTENSIONS):
        annotation = layout.annotate(path)
        if "unknown_label" in annotation["extra"]:
            raise UsageError(f"{path}: class folder {annotation['extra']['unknown_label']!r} is not in {label_map}; "
                             "check the folder name or pass the right --task-meta label map")
        if annotation["label"] is not None and annotation["split"] in ("train", "val", "test"):
            annotated.append((path, annotation))
    evaluation = "val" if any(a["split"] == "val" for _, a in annotated) else "test"
    if label_map is not None:
        classes = [line.strip() for line in label_map.read_text().splitlines() if line.strip()]
    else:
        classes = sorted({a["label"] for _, a in annotated})
    have = {a["label"] for _, a in annotated}
    missing = [f"train/{label.replace(' ', '_')}/" for label in classes if label not in have]
    n_missing = check_present("Kinetics-400", root, classes, missing, str(label_map or root), allow_missing,
                              what="class folders")
    index = {label: i for i, label in enumerate(classes)}
    videos = [TaskVideo(str(path), index[a["label"]], "train" if a["split"] == "train" else "test")
              for path, a in annotated if a["split"] in ("train", evaluation)]
    return Task("kinetics400", classes, videos, n_missing=n_missing)
