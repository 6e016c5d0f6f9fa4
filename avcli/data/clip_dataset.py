"""Clip datasets over catalog items: a `SampleSpec` (what a sampler decided) → decoded, augmented tensors.

`dataset[spec]` decodes every window of the spec — windows of the same item in one pass where they are close
(ClipReader.read_video_windows) — applies speed (frame skipping; faster audio) and reversal, augments each
window's video with randomness drawn from `spec.seed`, and returns stacked tensors:
`video` W_v×C×T×H×W (windows that have video, in order), `audio` W_a×N (windows that have audio), `items` and
the spec's labels. Readers (open containers) are kept per worker in a small LRU instead of being reopened.

A sample that fails to decode is replaced by the sampler's replacement of the same kind; the failure is
logged once per item, counted in the sample (`skipped`, summed into metrics.jsonl) and, after
`max_consecutive_failures` in a row, stops training with a clear error instead of skipping forever.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable

import av
import torch
from torch.utils.data import Dataset, default_collate

from avcli.data.catalog import CatalogItem
from avcli.data.sample_spec import SampleSpec, Window
from avcli.data.samplers.base import centred_window
from avcli.data.audio_transforms import (augment_waveform, reverse_audio, spec_masks_from_recipe, speed_up_audio,
                                         speed_up_tempo)
from avcli.data.video_transforms import (
    augment_video, eval_video, sample_video_params, split_i420, stack_frames,
)
from avcli.errors import AvcliError
from avcli.log import get_logger
from avcli.media.clip_reader import ClipReader, ClipReadError

log = get_logger("data")

_INHERITED: list = []  # readers a forked worker inherited: never touched, never freed (see ReaderCache.get)


class DataError(AvcliError):
    """Too many clips in a row failed to decode: the catalog (or the storage under it) is broken."""


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
            # `item` is a CatalogItem or a stand-in with its reading attributes (evaluation sources)
            reader = ClipReader(
                item.source, item.video_stream, item.audio_stream, audio_sidecar=getattr(item, "audio_sidecar", None),
                exact_durations=getattr(item, "media_path", None) is not None,  # avcli's own copies (transcode.py)
            )
            while len(self.readers) >= self.capacity:
                self.readers.popitem(last=False)[1].close()
        self.readers[item.source] = reader
        return reader

    def discard(self, item: CatalogItem) -> None:
        reader = self.readers.pop(item.source, None)
        if reader is not None:
            reader.close()

    def close(self) -> None:
        while self.readers:
            self.readers.popitem()[1].close()

    def __getstate__(self):  # spawned workers start with an empty cache; open containers do not pickle
        return {"capacity": self.capacity, "readers": OrderedDict(), "pid": -1}


def centred_spec(items: list[CatalogItem], index: int, clip, seed: int = 0) -> SampleSpec:
    """One deterministic, centred window of item `index` (statistics, evaluation)."""
    audio_start, video_start = centred_window(items[index].duration_s, clip)
    return SampleSpec((Window(index, video_start, audio_start),), seed=seed, kind="centred")


class ClipDataset(Dataset):
    """Training samples: `dataset[spec]` → dict of float video (normalised later), float audio, items, labels."""

    def __init__(
        self,
        items: list[CatalogItem],
        clip,
        augment,
        train: bool = True,
        cache_size: int = 8,
        replacement: Callable[[SampleSpec, int], SampleSpec] | None = None,
        max_consecutive_failures: int = 10,
        audio_speed: str = "resample",
    ):
        self.items = items
        self.audio_speed = audio_speed  # "resample" or "tempo" (avcli.data.audio_transforms)
        self.clip = clip
        self.augment = augment
        self.train = train
        self.readers = ReaderCache(cache_size)
        self.replacement = replacement
        self.max_consecutive_failures = max_consecutive_failures
        self._reported: set[str] = set()
        # Augmenting on the device, clips of training copies already at the recipe's short side leave the worker
        # as their decoded YUV planes: the worker skips the colour conversion (the costliest step after decoding)
        # and sends half the bytes; the device converts (`yuv420_to_rgb`). All items or none, so a batch has
        # one layout.
        self.yuv = bool(train and augment.on_device and items) and all(
            item.media_path is not None and item.width and item.height
            and min(item.width, item.height) == clip.resize_to and item.width % 2 == 0 and item.height % 2 == 0
            for item in items
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, spec: SampleSpec) -> dict:
        failures = 0
        while True:
            try:
                sample = self._decode(spec)
            except (ClipReadError, av.error.FFmpegError, OSError) as exc:
                failures += 1
                bad = self.items[spec.windows[0].item]
                self.readers.discard(bad)
                if bad.item_id not in self._reported:
                    self._reported.add(bad.item_id)
                    log.warning("skipping a clip of %s (%s): %s", bad.item_id, bad.path, str(exc).splitlines()[0])
                if self.replacement is None or failures >= self.max_consecutive_failures:
                    raise DataError(
                        f"{failures} clip(s) in a row failed to decode (last: {bad.path}: {exc}); check the "
                        "catalog with `avcli ingest stats` and re-ingest the broken files"
                    ) from None
                spec = self.replacement(spec, failures)
                continue
            sample["skipped"] = failures
            return sample

    def _decode(self, spec: SampleSpec) -> dict:
        """Slots: `video` has one entry per window that is not audio-only, `audio` one per window that is not
        video-only, in window order; a window with neither (a part the sampler could not place) is zeros with a
        False mask, so every sample of a batch has the same layout."""
        gen = torch.Generator().manual_seed(int(spec.seed))
        clip, augment = self.clip, self.augment
        frames_by_slot = self._read_videos(spec)
        on_device = self.train and augment.on_device
        videos, video_mask, params = [], [], []
        for slot, window in enumerate(spec.windows):
            if window.video_start is None and window.audio_start is not None:
                continue  # audio-only window
            frames = frames_by_slot.get(slot)
            video_mask.append(frames is not None)
            if frames is None:  # zeros in the layout of the other clips (I420 planes or RGB frames)
                shape = (clip.frames, clip.size * 3 // 2, clip.size) if self.yuv else (clip.frames, clip.size, clip.size, 3)
                frames = torch.zeros(shape, dtype=torch.uint8)
            if on_device:  # pixels are augmented after collation, on the model's device
                height = frames.shape[1] * 2 // 3 if self.yuv else frames.shape[1]
                videos.append(frames)
                params.append(sample_video_params(gen, height, frames.shape[2], augment))
            elif self.train:
                videos.append(augment_video(frames, clip.size, augment, gen))
            else:
                videos.append(eval_video(frames, clip.size))
        audios, audio_mask = [], []
        for window in spec.windows:
            if window.audio_start is None and window.video_start is not None:
                continue  # video-only window
            audio_mask.append(window.audio_start is not None)
            audios.append(self._audio(window, gen) if window.audio_start is not None else self._silence())
        sample = {"items": torch.tensor([w.item for w in spec.windows]), "labels": dict(spec.labels)}
        if videos:
            sample["video_mask"] = torch.tensor(video_mask)
            if on_device:
                sample["video_yuv" if self.yuv else "video_raw"], sample["video_params"] = videos, params
            else:
                sample["video"] = torch.stack(videos)
        if audios:
            sample["audio"], sample["audio_mask"] = torch.stack(audios), torch.tensor(audio_mask)
            if self.train and (augment.freq_masks or augment.time_masks):
                sample["spec_masks"] = spec_masks_from_recipe(gen, augment)
        return sample

    def _read_videos(self, spec: SampleSpec) -> dict[int, torch.Tensor]:
        """uint8 T×H×W×3 per window with video; the windows of one item are read together (one pass if close)."""
        by_item: dict[int, list[int]] = {}
        for slot, window in enumerate(spec.windows):
            if window.video_start is not None:
                by_item.setdefault(window.item, []).append(slot)
        out = {}
        for item_index, slots in by_item.items():
            reader = self.readers.get(self.items[item_index])
            requests = [(spec.windows[s].video_start, self.clip.frames, spec.windows[s].speed / self.clip.fps) for s in slots]
            for slot, frames in zip(slots, reader.read_video_windows(requests, self.clip.resize_to, yuv=self.yuv)):
                out[slot] = frames.flip(0) if spec.windows[slot].reverse else frames
        return out

    def _silence(self) -> torch.Tensor:
        return torch.zeros(int(round(self.clip.audio_seconds * self.clip.sample_rate)))

    def _audio(self, window: Window, gen: torch.Generator) -> torch.Tensor:
        clip = self.clip
        reader = self.readers.get(self.items[window.item])
        n_out = int(round(clip.audio_seconds * clip.sample_rate))
        wave = reader.read_audio(window.audio_start, clip.audio_seconds * window.speed, clip.sample_rate)
        if window.speed != 1 and self.audio_speed == "tempo":  # `speed`× the tempo, the pitch unchanged
            wave = speed_up_tempo(wave, window.speed, n_out, clip.sample_rate)
        elif window.speed != 1:  # `speed`× faster playback (and pitch): the longer window squeezed into the clip
            wave = speed_up_audio(wave, window.speed, n_out)
        if window.reverse:
            wave = reverse_audio(wave)
        return augment_waveform(wave, self.augment, gen) if self.train else wave


def collate_samples(samples: list[dict]) -> dict:
    """default_collate, except that raw (not yet augmented) clips of different frame sizes are padded to a common
    size and flattened to (B·W)×T×H×W×3 with their parameters, for `augment_video_batch` on the device."""
    raw = [sample.pop("video_raw") for sample in samples if "video_raw" in sample]
    yuv = [sample.pop("video_yuv") for sample in samples if "video_yuv" in sample]
    params = [sample.pop("video_params") for sample in samples if "video_params" in sample]
    batch = default_collate(samples)
    if raw:
        batch["video_raw"] = stack_frames([clip for clips in raw for clip in clips])
    if yuv:  # planes padded separately: luma B×T×H×W×1, chroma B×T×H/2×W/2×2 (`yuv420_to_rgb` on the device)
        planes = [split_i420(clip) for clips in yuv for clip in clips]
        batch["video_luma"] = stack_frames([luma for luma, _ in planes])
        batch["video_chroma"] = stack_frames([chroma for _, chroma in planes])
    if raw or yuv:
        batch["video_params"] = default_collate([p for ps in params for p in ps])
        batch["video_windows"] = len((raw or yuv)[0])
    return batch
