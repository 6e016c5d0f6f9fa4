"""Task names → loaders."""

from __future__ import annotations

from pathlib import Path

from avcli.errors import UsageError
from avcli.tasks.base import Task
from avcli.tasks.synthetic import load_synthetic

TASKS = {
    "synthetic": "the built-in synthetic audio-visual world (labels.csv from the generator)",
}


def load_task(name: str, data_root: Path) -> Task:
    if name == "synthetic":
        return load_synthetic(data_root)
    raise UsageError(f"--task {name}: unknown task; available: {', '.join(sorted(TASKS))}")
