"""UCF101: 101 action classes, three official train/test splits (`ucfTrainTestlist/`, CRLF lines).

Data root: `<root>/<Class>/v_<Class>_gXX_cYY.avi` (or the .avi files flat, or any folder shape: files are found
by name). The split lists are looked for in `<root>/ucfTrainTestlist`, beside the root, or at --task-meta.
Class indices are classInd.txt's, from 0.
"""

from __future__ import annotations

from pathlib import Path

from avcli.data.layouts import UCF101Layout
from avcli.tasks.base import FinetuneSchedule, Task
from avcli.tasks.files import require_folder
from avcli.tasks.official_splits import listed_videos_task

LAYOUT = "<root>/<Class>/v_<Class>_gXX_cYY.avi, split lists in <root>/ucfTrainTestlist or beside the root"


def load_ucf101(root: Path, meta: Path | None = None, allow_missing: bool = False) -> Task:
    root = require_folder(root, "UCF101", LAYOUT)
    layout = UCF101Layout(root, meta)
    classes = [name for name, _ in sorted(layout.classes.values(), key=lambda c: c[1])]
    return listed_videos_task("ucf101", "UCF101", root, layout, classes, allow_missing,
                              # AVID-CMA configs/benchmark/ucf/8at16-fold*.yaml: optimizer num_epochs, milestones,
                              # gamma; dataset train.clips_per_video, batch_size, min_area, color
                              schedule=FinetuneSchedule(epochs=16, milestones=(6, 10, 14), gamma=0.3, clips_per_video=10,
                                                        batch_size=64, min_area=0.08, color_jitter=(0.4, 0.4, 0.4, 0.2)))
