"""Uniform sampling: every item `clips_per_item` times per epoch in a shuffled order, one random window each."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from avcli.data.catalog import CatalogItem
from avcli.data.sample_spec import SampleSpec, Window
from avcli.data.samplers.base import SpecBatchSampler, draw_seed, random_window


class UniformSampler(SpecBatchSampler):
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

    def _make_batch(self, epoch: int, index: int, rng: np.random.Generator) -> list[SampleSpec]:
        order = self._item_order(epoch, self.clips_per_item)
        chosen = order[index * self.batch_size:(index + 1) * self.batch_size]
        return [self._sample(int(item), rng) for item in chosen]

    def _replace(self, spec: SampleSpec, rng: np.random.Generator) -> SampleSpec:
        return self._sample(self._other_item(rng, avoid=[spec.windows[0].item]), rng)
