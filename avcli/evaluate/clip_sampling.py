"""Which clips of a video (or windows of a recording) a probe looks at, as start times (METHODS.md §6).

- `mean` sampling: N evenly spaced clips per video, their features averaged into one per video, for training
  and testing alike (the quickstart probe and the retrieval protocol's video feature).
- `standard` sampling, video tasks: the classifier trains on 10 random clips per video (each a sample); tests
  report Clip@1 over 25 random clips (each clip scored on its own) and Video@1 over 10 evenly spaced clips
  (scores averaged per video).
- `standard` sampling, audio tasks: 10 random 2 s windows per recording to train, 10 evenly spaced to test, with
  scores averaged per recording.

Audio-task windows are planned from the recording's length (`ClipPlan.audio_starts`): a recording no longer than
the window has one window (ten copies of the same content are no more samples), a slightly longer one as many as
are at least a tenth of a window apart, a long one the plan's count. Where a short recording lies in its window is
the `padding` (AUDIO_PADDINGS): at the window's start with zeros after it (`start`, the default: the best of
these on short sounds, benchmarks/short_audio.py), zeros either side (`centre`), at the window's end (`end`), the
recording repeated (`tile`, METHODS.md §6's reading of AVID), or no padding at all (`none`: the window is the
recording's own length, at least MIN_WINDOW_S).

Random starts are drawn from a generator seeded by (seed, file path), so they do not depend on the order of the
videos and a cached feature always belongs to the same clips.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from avcli.errors import UsageError
from avcli.evaluate.features import evenly_spaced_starts

AUDIO_PADDINGS = ("start", "centre", "end", "tile", "none")
DEFAULT_PADDING = "start"  # measured on short sounds: README, "Short recordings"
MIN_STRIDE = 0.1  # windows planned closer than this fraction of a window are near copies of each other
MIN_WINDOW_S = 0.1  # padding "none": the shortest window (a spectrogram needs a few frames)
WINDOW_PLANNING = "by_length"  # recorded in results and cache keys: how many windows a recording gets


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

    def audio_starts(self, duration: float, window: float, key: str) -> list[float]:
        """The distinct windows of a recording: one when it is no longer than the window, else up to `count`
        (as many as fit at least MIN_STRIDE windows apart), each drawn as `starts` draws them."""
        return ClipPlan(self.kind, windows_for(duration, window, self.count), self.seed).starts(duration, window, key)


def windows_for(duration: float, window: float, count: int) -> int:
    """How many windows of `window` seconds a recording of `duration` seconds gets, at most `count`."""
    room = max(duration - window, 0.0)
    return min(count, 1 + math.ceil(room / (MIN_STRIDE * window) - 1e-9))


@dataclass(frozen=True)
class Sampling:
    """The clips a probe extracts: `train` for fitting, `tests` for scoring, each with the metric it gives."""

    name: str  # "mean" | "standard"
    train: ClipPlan
    tests: tuple[tuple[str, ClipPlan], ...]  # (metric, plan): "top1" | "clip_top1" | "video_top1"
    audio_seconds: float | None = None  # the window of an audio task; None: the recipe's clip
    padding: str = DEFAULT_PADDING  # audio tasks: where a recording shorter than the window lies (AUDIO_PADDINGS)

    @property
    def averages_features(self) -> bool:
        return self.name == "mean"

    def describe(self, audio_task: bool = False) -> dict:
        clips = {"sampling": self.name, "train_clips": self.train.name,
                 **{f"test_clips_{metric}": plan.name for metric, plan in self.tests}}
        if audio_task:
            clips.update(window_s=self.audio_seconds, padding=self.padding, windows=WINDOW_PLANNING)
        return clips


def check_padding(padding: str) -> str:
    padding = "centre" if padding == "center" else padding
    if padding not in AUDIO_PADDINGS:
        raise UsageError(f"--audio-padding {padding}: choose {', '.join(AUDIO_PADDINGS)}")
    return padding


def mean_sampling(clips: int, audio_seconds: float | None = None, padding: str = DEFAULT_PADDING) -> Sampling:
    plan = ClipPlan("even", clips)
    return Sampling("mean", plan, (("top1", plan),), audio_seconds, check_padding(padding))


def standard_sampling(
    audio_task: bool, train_clips: int = 10, test_clips: int = 10, random_test_clips: int = 25, seed: int = 0,
    audio_seconds: float = 2.0, padding: str = DEFAULT_PADDING,
) -> Sampling:
    train = ClipPlan("random", train_clips, seed)
    even = ClipPlan("even", test_clips)
    if audio_task:
        return Sampling("standard", train, (("top1", even),), audio_seconds, check_padding(padding))
    tests = (("video_top1", even),) + ((("clip_top1", ClipPlan("random", random_test_clips, seed + 1)),)
                                       if random_test_clips else ())
    return Sampling("standard", train, tests)
