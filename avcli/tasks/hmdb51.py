"""HMDB51: 51 action classes, three official splits (`testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt`,
lines `<video>.avi <flag>`: 1 = train, 2 = test, 0 = not used by that split).

Data root: `<root>/<class>/<video>.avi` (or flat). Split files in `<root>/testTrainMulti_7030_splits`, beside the
root, or at --task-meta. Class indices: the order of `class_list.txt` in or beside the split folder when it is
there, else the order of the split files' names (the same order for the full set).
"""

from __future__ import annotations

from pathlib import Path

from avcli.data.layouts import HMDB51Layout
from avcli.tasks.base import FinetuneSchedule, Task
from avcli.tasks.files import require_folder
from avcli.tasks.official_splits import listed_videos_task

LAYOUT = "<root>/<class>/<video>.avi, split files in <root>/testTrainMulti_7030_splits or beside the root"


def load_hmdb51(root: Path, meta: Path | None = None, allow_missing: bool = False) -> Task:
    root = require_folder(root, "HMDB51", LAYOUT)
    layout = HMDB51Layout(root, meta)
    classes = list(layout.class_names.values())
    for candidate in (layout.meta / "class_list.txt", layout.meta.parent / "class_list.txt"):
        if candidate.is_file():
            listed = [line.strip() for line in candidate.read_text().splitlines() if line.strip()]
            if set(classes) <= set(listed):  # the official order, also when only some classes' files are here
                classes = listed
            break
    return listed_videos_task("hmdb51", "HMDB51", root, layout, classes, allow_missing,
                              # AVID-CMA configs/benchmark/hmdb51/8at16-fold*.yaml: optimizer num_epochs, milestones,
                              # gamma; dataset train.clips_per_video, batch_size, min_area, color
                              schedule=FinetuneSchedule(epochs=10, milestones=(3, 6, 8), gamma=0.3, clips_per_video=25,
                                                        batch_size=64, min_area=0.08, color_jitter=(1.0, 1.0, 1.0, 0.2)))
