"""Audio-visual synchronisation pairs with a curriculum of negatives (AVTS, METHODS.md §3).

Every sample is a (video window, audio window) pair: windows[0] has video only, windows[1] audio only.
positive: same item, audio centred on the video. easy: audio from another item. hard: same item, audio moved so
that it does not overlap the video and is ≥ min_gap_s away. superhard: same item, audio moved by a shift in
[superhard_min_shift_s, min(audio length, (audio+video)/2)) so it still overlaps the video.
Each batch holds exact counts of each kind (see `counts`), in shuffled positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from avcli.data.catalog import CatalogItem
from avcli.data.sample_spec import SampleSpec, Window
from avcli.data.samplers.base import EPS, SpecBatchSampler, disjoint_starts, draw_seed, random_window


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


class SyncPairSampler(SpecBatchSampler):
    """AVTS pairs. Options: `positive_fraction` (0.5, i.e. positives:negatives = 1:1), `switch_epoch` (None:
    easy negatives only, forever; from this epoch on `hard_fraction` (0.25) of the negatives are hard and
    `superhard_fraction` (0) superhard), `min_gap_s` (0.5) between a hard negative's audio and video,
    `superhard_min_shift_s` (0.1), `clips_per_item` (1; epoch = len(items)·clips_per_item samples, each
    item once as the video anchor per clip). An item too short for a hard (superhard) negative gets an easy one;
    labels and kind record what was actually drawn: {"sync": 1|0, "negative": "none"|"easy"|"hard"|"superhard"}.
    """

    def __init__(self, items: Sequence[CatalogItem], clip, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, *, positive_fraction: float = 0.5, hard_fraction: float = 0.25,
                 superhard_fraction: float = 0.0, switch_epoch: int | None = None, min_gap_s: float = 0.5,
                 superhard_min_shift_s: float = 0.1, clips_per_item: int = 1):
        super().__init__(items, clip, batch_size, seed, rank, world_size)
        if len(self.items) < 2:
            raise ValueError("sync pairs need at least 2 items (easy negatives take audio from another item)")
        if not (0 <= positive_fraction <= 1 and 0 <= hard_fraction and 0 <= superhard_fraction
                and hard_fraction + superhard_fraction <= 1):
            raise ValueError("positive_fraction must be in [0, 1] and hard_fraction + superhard_fraction ≤ 1 "
                             f"(got {positive_fraction}, {hard_fraction}, {superhard_fraction})")
        if min_gap_s < 0 or superhard_min_shift_s < 0 or clips_per_item < 1:
            raise ValueError("min_gap_s and superhard_min_shift_s must be ≥ 0, clips_per_item ≥ 1")
        self.positive_fraction, self.hard_fraction = float(positive_fraction), float(hard_fraction)
        self.superhard_fraction, self.switch_epoch = float(superhard_fraction), switch_epoch
        self.min_gap_s, self.superhard_min_shift_s = float(min_gap_s), float(superhard_min_shift_s)
        self.clips_per_item = int(clips_per_item)

        video, audio = self.clip.spans()
        self.superhard_max_shift = min(audio, (audio + video) / 2)  # beyond this the audio leaves the video
        if superhard_fraction > 0 and superhard_min_shift_s >= self.superhard_max_shift:
            raise ValueError(f"superhard_min_shift_s {superhard_min_shift_s:g} must be below "
                             f"{self.superhard_max_shift:g} s, or the shifted audio no longer overlaps the video")
        self.hard_ok = self.durations >= video + audio + self.min_gap_s - EPS
        self.superhard_ok = (self.durations >= max(video, audio) - EPS) & (
            self._superhard_limit(self.durations) > self.superhard_min_shift_s)
        self._long_enough = {"hard": np.flatnonzero(self.hard_ok), "superhard": np.flatnonzero(self.superhard_ok)}

    def _superhard_limit(self, duration):
        video, audio = self.clip.spans()
        return np.minimum(self.superhard_max_shift, duration - (video + audio) / 2)

    def counts(self, epoch: int) -> dict[str, int]:
        """How many samples of each kind every batch of `epoch` asks for (before too-short items turn hard or
        superhard negatives into easy ones)."""
        positives = _round(self.batch_size * self.positive_fraction)
        negatives = self.batch_size - positives
        hard = superhard = 0
        if self.switch_epoch is not None and epoch >= self.switch_epoch:
            hard = _round(negatives * self.hard_fraction)
            superhard = min(_round(negatives * self.superhard_fraction), negatives - hard)
        return {"positive": positives, "easy": negatives - hard - superhard, "hard": hard, "superhard": superhard}

    def _num_samples(self) -> int:
        return len(self.items) * self.clips_per_item

    # ------------------------------------------------------------------ one pair of each kind

    def _pair(self, item: int, kind: str, rng: np.random.Generator, avoid_audio: Sequence[int] = ()) -> SampleSpec:
        if kind == "hard" and not self.hard_ok[item] or kind == "superhard" and not self.superhard_ok[item]:
            kind = "easy"
        duration = float(self.durations[item])
        video, audio = self.clip.spans()
        audio_item = item
        if kind == "positive":
            audio_start, video_start = random_window(duration, self.clip, rng, jitter=0.0)
        elif kind == "easy":
            video_start = float(rng.random()) * max(duration - video, 0.0)
            audio_item = self._other_item(rng, avoid=[item, *avoid_audio])
            if audio_item == item:  # only avoided items were left: drop the wish, never the other-item rule
                audio_item = self._other_item(rng, avoid=[item])
            audio_start = float(rng.random()) * max(float(self.durations[audio_item]) - audio, 0.0)
        elif kind == "hard":  # uniform over layouts with the audio wholly before or wholly after the video
            if rng.random() < 0.5:
                video_start, audio_start = disjoint_starts(rng, 0.0, duration, [video, audio], self.min_gap_s)
            else:
                audio_start, video_start = disjoint_starts(rng, 0.0, duration, [audio, video], self.min_gap_s)
        else:  # superhard: shift δ from the aligned position, min_shift ≤ |δ| < limit
            limit = float(self._superhard_limit(duration))
            magnitude = self.superhard_min_shift_s + float(rng.random()) * (limit - self.superhard_min_shift_s)
            relative = (video - audio) / 2 + (magnitude if rng.random() < 0.5 else -magnitude)  # audio − video start
            extent = max(video, audio, (video + audio) / 2 + magnitude)
            video_start = float(rng.random()) * max(duration - extent, 0.0) - min(relative, 0.0)
            audio_start = video_start + relative
        labels = {"sync": int(kind == "positive"), "negative": "none" if kind == "positive" else kind}
        windows = (Window(item, video_start, None), Window(audio_item, None, audio_start))
        return SampleSpec(windows, draw_seed(rng), labels, kind)

    def held_out_specs(self, count: int, seed: int = 104729) -> list[SampleSpec]:
        """`count` fixed pairs for measuring sync accuracy: half positives, the negatives half easy and half hard
        (easy where the item is too short for hard), from their own random stream — the same for every epoch,
        rank and resumed run, and drawn independently of the training batches."""
        rng = np.random.default_rng([self.seed % 2**64, seed])
        positives = count // 2
        hard = (count - positives) // 2
        kinds = ["positive"] * positives + ["hard"] * hard + ["easy"] * (count - positives - hard)
        items = rng.integers(len(self.items), size=count)
        return [self._pair(int(item), kind, rng) for item, kind in zip(items, kinds)]

    def _make_batch(self, epoch: int, index: int, rng: np.random.Generator) -> list[SampleSpec]:
        order = self._item_order(epoch, self.clips_per_item)
        anchors = order[index * self.batch_size:(index + 1) * self.batch_size]
        kinds = [kind for kind, n in self.counts(epoch).items() for _ in range(n)]
        kinds = [kinds[k] for k in rng.permutation(len(kinds))]
        return [self._pair(int(item), kind, rng) for item, kind in zip(anchors, kinds, strict=True)]

    def _replace(self, spec: SampleSpec, rng: np.random.Generator) -> SampleSpec:
        """Same kind, another anchor item (easy: another audio item too); hard/superhard anchors are drawn among
        the items long enough for that kind."""
        anchor, audio_item = spec.windows[0].item, spec.windows[1].item
        item = self._other_item(rng, avoid=[anchor, audio_item], candidates=self._long_enough.get(spec.kind))
        return self._pair(item, spec.kind, rng, avoid_audio=[audio_item] if spec.kind == "easy" else ())
