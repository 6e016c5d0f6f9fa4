"""Which clips of a video (or windows of a recording) a probe looks at, as start times (METHODS.md §6).

- `mean` sampling: N evenly spaced clips per video, their features averaged into one per video, for training
  and testing alike (the quickstart probe and the retrieval protocol's video feature).
- `standard` sampling, video tasks: the classifier trains on 10 random clips per video (each a sample); tests
  report Clip@1 over 25 random clips (each clip scored on its own) and Video@1 over 10 evenly spaced clips
  (scores averaged per video).
- `standard` sampling, audio tasks: 10 random 2 s windows per recording to train, 10 evenly spaced to test, with
  scores averaged per recording; a recording shorter than the window is tiled to fill it.

Random starts are drawn from a generator seeded by (seed, file path), so they do not depend on the order of the
videos and a cached feature always belongs to the same clips.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from avcli.evaluate.features import evenly_spaced_starts


@dataclass(frozen=True)
class ClipPlan:
    kind: str  # "even" | "random"
    count: int
    seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.kind}{self.count}" + (f"s{self.seed}" if self.kind == "random" else "")

    def starts(self, duration: float, window: float, key: str) -> list[float]:
        """Start times of this plan's windows of `window` seconds in a file of `duration` seconds."""
        if self.kind == "even":
            return evenly_spaced_starts(duration, window, self.count)
        room = max(duration - window, 0.0)
        rng = random.Random(f"{self.seed}:{key}")
        return [rng.uniform(0.0, room) for _ in range(self.count)]


@dataclass(frozen=True)
class Sampling:
    """The clips a probe extracts: `train` for fitting, `tests` for scoring, each with the metric it gives."""

    name: str  # "mean" | "standard"
    train: ClipPlan
    tests: tuple[tuple[str, ClipPlan], ...]  # (metric, plan): "top1" | "clip_top1" | "video_top1"
    audio_seconds: float | None = None  # the window of an audio task; None: the recipe's clip

    @property
    def averages_features(self) -> bool:
        return self.name == "mean"

    def describe(self) -> dict:
        return {"sampling": self.name, "train_clips": self.train.name,
                **{f"test_clips_{metric}": plan.name for metric, plan in self.tests}}


def mean_sampling(clips: int, audio_seconds: float | None = None) -> Sampling:
    plan = ClipPlan("even", clips)
    return Sampling("mean", plan, (("top1", plan),), audio_seconds)


def standard_sampling(
    audio_task: bool, train_clips: int = 10, test_clips: int = 10, random_test_clips: int = 25, seed: int = 0,
    audio_seconds: float = 2.0,
) -> Sampling:
    train = ClipPlan("random", train_clips, seed)
    even = ClipPlan("even", test_clips)
    if audio_task:
        return Sampling("standard", train, (("top1", even),), audio_seconds)
    tests = (("video_top1", even),) + ((("clip_top1", ClipPlan("random", random_test_clips, seed + 1)),)
                                       if random_test_clips else ())
    return Sampling("standard", train, tests)
