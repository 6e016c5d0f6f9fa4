"""Task names → loaders, with what each expects under --data-root (shown by `avcli probe --list-tasks`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from avcli.errors import UsageError
from avcli.tasks import csv_list, dcase2014, esc50, folder, hmdb51, kinetics400, synthetic, ucf101, vggsound
from avcli.tasks.base import Task


@dataclass(frozen=True)
class TaskInfo:
    name: str
    description: str
    layout: str  # what --data-root must hold
    load: Callable[..., Task]
    takes_meta: bool = False  # whether --task-meta (the official split/label files) applies


_INFOS = [
    TaskInfo("ucf101", "UCF101 actions, 101 classes, official splits 1-3", ucf101.LAYOUT, ucf101.load_ucf101, True),
    TaskInfo("hmdb51", "HMDB51 actions, 51 classes, official splits 1-3", hmdb51.LAYOUT, hmdb51.load_hmdb51, True),
    TaskInfo("esc50", "ESC-50 environmental sounds, 50 classes, official folds 1-5 (audio)", esc50.LAYOUT,
             esc50.load_esc50, True),
    TaskInfo("dcase2014", "DCASE2014 acoustic scenes, 10 classes, train/test (audio)", dcase2014.LAYOUT,
             dcase2014.load_dcase2014),
    TaskInfo("vggsound", "VGG-Sound, 309 classes, official train/test, clips present on disk", vggsound.LAYOUT,
             vggsound.load_vggsound, True),
    TaskInfo("kinetics400", "Kinetics-400 actions, 400 classes, train/val class folders", kinetics400.LAYOUT,
             kinetics400.load_kinetics400, True),
    TaskInfo("synthetic", "the built-in synthetic audio-visual world (labels.csv from the generator)",
             synthetic.LAYOUT, synthetic.load_synthetic),
    TaskInfo("folder", "your data: one folder per class, optional train/test folders (else 5 stratified folds)",
             folder.LAYOUT, folder.load_folder),
    TaskInfo("csv", "your data: a CSV of path,label[,split] (no split: 5 stratified folds)", csv_list.LAYOUT,
             csv_list.load_csv),
]
TASK_INFO = {info.name: info for info in _INFOS}
TASKS = {info.name: info.description for info in _INFOS}


def load_task(
    name: str, data_root: Path, split: str | None = None, *, meta: Path | None = None, allow_missing: bool = False
) -> Task:
    """The task `name` from `data_root`, as seen by `split` (default: its first split or fold).

    `meta` points at the official split/label files where they are not in or beside the data root;
    `allow_missing` evaluates on the files present when some the official lists name are not on disk."""
    info = TASK_INFO.get(name)
    if info is None:
        raise UsageError(f"--task {name}: unknown task; available: {', '.join(sorted(TASKS))}")
    if meta is not None:
        if not info.takes_meta:
            raise UsageError(f"--task-meta {meta}: task {name} has no metadata files to point at; drop --task-meta")
        if not Path(meta).exists():
            raise UsageError(f"--task-meta {meta}: no such file or folder; point it at the official {name} files")
    task = info.load(Path(data_root), Path(meta) if meta is not None else None, allow_missing)
    return task.select(split) if split is not None else task
