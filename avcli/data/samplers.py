"""Clip samplers: small strategy objects deciding which item each sample comes from (pytorchvideo style).

A sampler yields keys `(item_index, sample_seed)`; the dataset turns a key into a clip, drawing every random
choice (window start, augmentation) from `sample_seed`. Everything is a function of `seed + epoch`, and a
sampler can start part-way into an epoch, so a resumed run sees exactly the samples it would have seen.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class UniformClipSampler(Sampler):
    """Each epoch visits every item `clips_per_item` times in a random order; each rank takes a disjoint share."""

    def __init__(self, num_items: int, clips_per_item: int = 1, seed: int = 0, rank: int = 0, world_size: int = 1):
        if num_items < 1:
            raise ValueError("the catalog has no usable items")
        self.num_items = num_items
        self.clips_per_item = clips_per_item
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch, skipping the first `start` samples of this rank's share (resume)."""
        self.epoch = epoch
        self.start = start

    def epoch_keys(self, epoch: int) -> list[tuple[int, int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        total = self.num_items * self.clips_per_item
        order = torch.randperm(total, generator=gen) % self.num_items
        seeds = torch.randint(0, 2**62, (total,), generator=gen)
        usable = total - total % self.world_size
        keys = list(zip(order[:usable].tolist(), seeds[:usable].tolist()))
        return keys[self.rank :: self.world_size]

    def __len__(self) -> int:
        return (self.num_items * self.clips_per_item) // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.epoch_keys(self.epoch)[self.start :])
