"""Labelled evaluation datasets (tasks) by name: what probe, retrieve and fingerprint evaluate on."""

from avcli.tasks.base import Task, TaskVideo
from avcli.tasks.registry import TASKS, load_task

__all__ = ["TASKS", "Task", "TaskVideo", "load_task"]
