"""What a task is: labelled videos with their split, and the class list."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskVideo:
    path: str
    label: int
    split: str  # "train" | "test"
    duration_s: float | None = None


@dataclass
class Task:
    name: str
    classes: list[str]
    videos: list[TaskVideo]

    def split(self, name: str) -> list[TaskVideo]:
        return [v for v in self.videos if v.split == name]
