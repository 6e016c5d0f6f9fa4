"""Temporal pretext samples: speed, direction, intra- and inter-modal order (Jenni et al., METHODS.md §4).

Every spec has three windows at fixed positions:
  0  the main clip (video + audio) at a speed from `speeds` that the item's length allows, maybe reversed;
  1  a second clip (video + audio, speed 1, forward) of the same item, not overlapping clip 0 — intra-modal
     order and the video–video contrastive pair; labels["order"] = 1 if it starts after clip 0, else 0;
  2  an inter-modal pair: video of one time and audio of another, not overlapping each other;
     labels["av_order"] = 1 if the audio starts after the video, else 0.
Where a part is switched off (`ordering`, `av_ordering`) or the item is too short for it, its window is empty
(video_start = audio_start = None: nothing to decode) and its label is −1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avcli.data.catalog import CatalogItem
from avcli.data.sample_spec import SampleSpec, Window
from avcli.data.samplers.base import (EPS, PerItemSampler, disjoint_starts, draw_seed, fits, random_window,
                                      window_in_extent)


class TemporalSampler(PerItemSampler):
    """Options: `speeds` (1, 2, 4, 8) — the speed is drawn uniformly among those whose video span
    frames·speed/fps and audio span audio_seconds·speed both fit in the item (the slowest when none does);
    `reverse_prob` 0.5; `ordering` / `av_ordering` (True) to emit windows 1 / 2; `min_gap_s` (0) between the
    clips that must not overlap; `clips_per_item` (1; epoch = len(items)·clips_per_item samples, each item once
    per clip). labels {"speed_class": index into speeds, "reverse": 0|1, "order": 0|1|-1, "av_order": 0|1|-1};
    kind "temporal"."""

    kind = "temporal"

    def __init__(self, items: Sequence[CatalogItem], clip, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, *, speeds: Sequence[int] = (1, 2, 4, 8), reverse_prob: float = 0.5,
                 ordering: bool = True, av_ordering: bool = True, min_gap_s: float = 0.0, clips_per_item: int = 1):
        super().__init__(items, clip, batch_size, seed, rank, world_size)
        self.speeds = tuple(int(s) for s in speeds)
        if not self.speeds or min(self.speeds) < 1 or len(set(self.speeds)) != len(self.speeds):
            raise ValueError(f"speeds must be distinct integers ≥ 1, got {tuple(speeds)}")
        if not 0 <= reverse_prob <= 1 or min_gap_s < 0 or clips_per_item < 1:
            raise ValueError("reverse_prob must be in [0, 1], min_gap_s ≥ 0 and clips_per_item ≥ 1")
        self.reverse_prob, self.ordering, self.av_ordering = float(reverse_prob), bool(ordering), bool(av_ordering)
        self.min_gap_s, self.clips_per_item = float(min_gap_s), int(clips_per_item)
        extents = np.array([self.clip.extent(s) for s in self.speeds])
        self.allowed = self.durations[:, None] >= extents[None, :] - EPS  # item × speed class
        self.slowest = int(np.argmin(self.speeds))

    def speed_classes(self, item: int) -> list[int]:
        """The speed classes `item` can be sampled at."""
        return [int(k) for k in np.flatnonzero(self.allowed[item])] or [self.slowest]

    def held_out_specs(self, count: int, seed: int = 104729) -> list[SampleSpec]:
        """`count` fixed samples for measuring the pretext heads on clips no batch holds: items and windows drawn
        from their own random stream, the same for every epoch, rank and resumed run."""
        rng = np.random.default_rng([self.seed % 2**64, seed])
        return [self._sample(int(item), rng) for item in rng.integers(len(self.items), size=count)]

    def _num_samples(self) -> int:
        return len(self.items) * self.clips_per_item

    def _offset(self, rng: np.random.Generator) -> float:
        jitter = self.clip.max_offsync_s
        return jitter * (2 * float(rng.random()) - 1) if jitter > 0 else 0.0

    def _sample(self, item: int, rng: np.random.Generator) -> SampleSpec:
        duration = float(self.durations[item])
        classes = self.speed_classes(item)
        speed_class = classes[int(rng.integers(len(classes)))]
        speed, reverse = self.speeds[speed_class], bool(rng.random() < self.reverse_prob)
        main_extent, clip_extent = self.clip.extent(speed), self.clip.extent(1)
        empty = Window(item, None, None)

        second, order = empty, -1
        if self.ordering and fits(duration - main_extent - self.min_gap_s, 1, clip_extent, 0.0):
            order = int(rng.random() < 0.5)  # 1: the second clip comes after the main one
            lengths = [main_extent, clip_extent] if order else [clip_extent, main_extent]
            starts = disjoint_starts(rng, 0.0, duration, lengths, self.min_gap_s)
            main_start, second_start = starts if order else starts[::-1]
            audio_start, video_start = window_in_extent(main_start, duration, self.clip, speed, self._offset(rng))
            second_audio, second_video = window_in_extent(second_start, duration, self.clip, 1, self._offset(rng))
            second = Window(item, second_video, second_audio)
        else:
            audio_start, video_start = random_window(duration, self.clip, rng, speed=speed)
        main = Window(item, video_start, audio_start, speed=speed, reverse=reverse)

        cross, av_order = empty, -1
        video, audio = self.clip.spans(1)
        if self.av_ordering and duration >= video + audio + self.min_gap_s - EPS:
            av_order = int(rng.random() < 0.5)  # 1: the audio comes after the video
            if av_order:
                cross_video, cross_audio = disjoint_starts(rng, 0.0, duration, [video, audio], self.min_gap_s)
            else:
                cross_audio, cross_video = disjoint_starts(rng, 0.0, duration, [audio, video], self.min_gap_s)
            cross = Window(item, cross_video, cross_audio)

        labels = {"speed_class": speed_class, "reverse": int(reverse), "order": order, "av_order": av_order}
        return SampleSpec((main, second, cross), draw_seed(rng), labels, self.kind)
