"""Uniform sampling: every item `clips_per_item` times per epoch in a shuffled order, one random window each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avcli.data.catalog import CatalogItem
from avcli.data.sample_spec import SampleSpec, Window
from avcli.data.samplers.base import PerItemSampler, draw_seed, random_window


class UniformSampler(PerItemSampler):
    """xID / AVID sampling. Epoch = len(items)·clips_per_item samples; kind "uniform"; one video+audio window at
    speed 1, offset by up to ±clip.max_offsync_s."""

    kind = "uniform"

    def __init__(self, items: Sequence[CatalogItem], clip, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, *, clips_per_item: int = 1):
        super().__init__(items, clip, batch_size, seed, rank, world_size)
        if clips_per_item < 1:
            raise ValueError(f"clips_per_item must be ≥ 1, got {clips_per_item}")
        self.clips_per_item = int(clips_per_item)

    def _num_samples(self) -> int:
        return len(self.items) * self.clips_per_item

    def _sample(self, item: int, rng: np.random.Generator) -> SampleSpec:
        audio_start, video_start = random_window(self.durations[item], self.clip, rng)
        return SampleSpec((Window(item, video_start, audio_start),), draw_seed(rng), {}, self.kind)
