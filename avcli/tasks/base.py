"""What a task is: labelled videos (or sound recordings) with their split, and the class list.

A task with several official splits or folds (UCF101 and HMDB51: three splits; ESC-50: five folds) keeps every
video's membership in each of them (`TaskVideo.splits`); `Task.select(split_id)` gives the task as seen by one of
them, with each video's `split` set to "train", "test" or "unused" (HMDB51's flag 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

from avcli.errors import UsageError


@dataclass(frozen=True)
class TaskVideo:
    path: str
    label: int
    split: str  # "train" | "test" in the selected split ("unused" where a split leaves it out)
    duration_s: float | None = None
    # split id → "train" | "test" | "unused", for tasks with several official splits or folds
    splits: Mapping[str, str] | None = field(default=None, compare=False, hash=False)
    # where clips are decoded from when not `path` itself (a catalog's training copy), and its streams
    source: str | None = None
    video_stream: int | None = None
    audio_stream: int | None = None

    @property
    def media(self) -> str:
        """The file to decode."""
        return self.source or self.path


@dataclass(frozen=True)
class FinetuneSchedule:
    """A task's fine-tuning protocol (METHODS.md §6; AVID-CMA configs/benchmark/{ucf,hmdb51}/8at16-fold*.yaml):
    epochs of the whole network after `warmup_epochs` classifier-only ones, the epochs where the learning rate is
    multiplied by `gamma`, random clips drawn from every training video per epoch (`clips_per_video`), clips per
    batch, and the training clips' augmentation: a random resized crop of `min_area` to all of the frame, a flip
    and colour jitter (brightness, contrast, saturation, hue), the same for every frame of a clip."""

    epochs: int
    milestones: tuple[int, ...]
    warmup_epochs: int = 5
    gamma: float = 0.3
    clips_per_video: int = 1
    batch_size: int = 64
    min_area: float = 0.08
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.2)


@dataclass
class Task:
    name: str
    classes: list[str]
    videos: list[TaskVideo]
    split_id: str = "test"  # which split or fold `videos[i].split` refers to
    split_ids: tuple[str, ...] = ("test",)  # every split or fold the task defines
    audio_only: bool = False  # sound recordings: audio protocols, no video stream needed
    svm_c: float = 1.0  # C of the audio SVM protocol (METHODS.md §6: 10 for ESC-50, 1 for DCASE)
    schedule: FinetuneSchedule | None = None  # the task's fine-tuning schedule, when it has an official one
    n_missing: int = 0  # listed in the metadata but not on disk (only where that is allowed)
    notes: dict = field(default_factory=dict)

    def split(self, name: str) -> list[TaskVideo]:
        return [v for v in self.videos if v.split == name]

    def select(self, split_id: str) -> "Task":
        """The task as seen by split (or fold) `split_id`: each video's `split` is its membership there."""
        split_id = str(split_id)
        if split_id == self.split_id:
            return self
        if split_id not in self.split_ids:
            raise UsageError(f"--splits {split_id}: task {self.name} has splits {', '.join(self.split_ids)}")
        videos = [replace(video, split=(video.splits or {}).get(split_id, "unused")) for video in self.videos]
        return replace(self, videos=videos, split_id=split_id)


def with_memberships(name: str, classes: list[str], videos: list[TaskVideo], split_ids: tuple[str, ...], **fields) -> Task:
    """A task whose videos carry their membership of every split, selected at its first split."""
    everything = Task(name, classes, videos, split_id="", split_ids=split_ids, **fields)
    return everything.select(split_ids[0])
