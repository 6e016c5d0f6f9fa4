"""What a sampler decides and a clip dataset decodes: windows on items' timelines, plus the labels a method needs.

Samplers (avcli/data/samplers/) make every random choice about *where* clips come from — which item, which
times, speed, direction — and write it down as a `SampleSpec`. The clip dataset only decodes and augments
what the spec says (its augmentation randomness comes from `seed`). This keeps sampling testable without
decoding anything, and lets the dataset decode several windows of one item in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Window:
    """One clip of one catalog item. Times are seconds on the item's timeline (0 = its first video frame).

    `video_start` None: no video wanted from this window; `audio_start` None: no audio. The video clip covers
    frames at video_start + k·speed/fps (k < frames), i.e. `speed`× playback by frame skipping; the audio window
    covers audio_seconds·speed seconds from audio_start, played back `speed`× faster. `reverse` plays both
    backwards (the frames and samples of the same window in reverse order).
    """

    item: int
    video_start: float | None
    audio_start: float | None
    speed: int = 1
    reverse: bool = False


@dataclass(frozen=True)
class SampleSpec:
    """One training sample: its windows (one or more, possibly of different items), the seed of its augmentation,
    and method labels such as {"sync": 1, "negative": "hard"} or {"speed_class": 2, "order": 0}."""

    windows: tuple[Window, ...]
    seed: int
    labels: dict = field(default_factory=dict, hash=False, compare=True)
    kind: str = "uniform"  # the sampler decision class; a failed sample is replaced by one of the same kind
