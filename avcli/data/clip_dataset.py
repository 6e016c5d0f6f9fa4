"""Clip datasets over catalog items: a sampler key → video clip + audio window on one timeline.

The audio window (`audio_seconds`) is placed inside the item, the video clip (`frames / fps` seconds) at its
centre, shifted by up to ±`max_offsync_s` at train time (METHODS.md §0). Readers (open containers) are kept per
worker in a small LRU instead of being reopened for every clip.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
from torch.utils.data import Dataset

from avcli.data.catalog import CatalogItem
from avcli.data.transforms import augment_video, eval_video
from avcli.media.clip_reader import ClipReader


_INHERITED: list = []  # readers a forked worker inherited: never touched, never freed (see ReaderCache.get)


class ReaderCache:
    """At most `capacity` open ClipReaders, least recently used closed first; one cache per process."""

    def __init__(self, capacity: int = 8):
        self.capacity = capacity
        self.readers: OrderedDict[str, ClipReader] = OrderedDict()
        self.pid = os.getpid()

    def get(self, item: CatalogItem) -> ClipReader:
        if self.pid != os.getpid():
            # A forked data-loader worker: FFmpeg state opened by the parent must not be used or closed here
            # (its decoder threads do not exist in the child), so set it aside and start afresh.
            _INHERITED.append(self.readers)
            self.readers, self.pid = OrderedDict(), os.getpid()
        reader = self.readers.pop(item.source, None)
        if reader is None:
            reader = ClipReader(item.source, item.video_stream, item.audio_stream)
            while len(self.readers) >= self.capacity:
                self.readers.popitem(last=False)[1].close()
        self.readers[item.source] = reader
        return reader

    def close(self) -> None:
        while self.readers:
            self.readers.popitem()[1].close()

    def __getstate__(self):  # spawned workers start with an empty cache; open containers do not pickle
        return {"capacity": self.capacity, "readers": OrderedDict(), "pid": -1}


def window_starts(duration: float, clip, gen: torch.Generator | None, jitter: float) -> tuple[float, float]:
    """(audio_start, video_start) for a clip config; random when `gen` is given, centred otherwise."""
    video_seconds = clip.frames / clip.fps
    room = max(duration - clip.audio_seconds, 0.0)
    audio_start = room * float(torch.rand((), generator=gen)) if gen is not None else room / 2
    offset = (clip.audio_seconds - video_seconds) / 2
    if gen is not None and jitter > 0:
        offset += jitter * (2 * float(torch.rand((), generator=gen)) - 1)
    video_start = audio_start + min(max(offset, 0.0), clip.audio_seconds - video_seconds)
    video_start = min(video_start, max(duration - video_seconds, 0.0))
    return audio_start, video_start


class ClipDataset(Dataset):
    """Training samples: `dataset[(item_index, sample_seed)]` → dict of uint8 video, float audio, ids, times."""

    def __init__(self, items: list[CatalogItem], clip, augment, train: bool = True, cache_size: int = 8):
        self.items = items
        self.clip = clip
        self.augment = augment
        self.train = train
        self.readers = ReaderCache(cache_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, sample_seed = key
        item = self.items[index]
        gen = torch.Generator().manual_seed(int(sample_seed))
        jitter = self.clip.max_offsync_s if self.train else 0.0
        audio_start, video_start = window_starts(item.duration_s or 0.0, self.clip, gen, jitter)
        reader = self.readers.get(item)
        frames = reader.read_video(video_start, self.clip.frames, self.clip.fps, self.clip.resize_to)
        audio = reader.read_audio(audio_start, self.clip.audio_seconds, self.clip.sample_rate)
        if self.train:
            video = augment_video(frames, self.clip.size, self.augment, gen)
            volume = self.augment.volume
            audio = audio * (1 - volume + 2 * volume * float(torch.rand((), generator=gen)))
        else:
            video = eval_video(frames, self.clip.size)
        return {
            "video": video,
            "audio": audio,
            "index": index,
            "video_start": video_start,
            "audio_start": audio_start,
        }
