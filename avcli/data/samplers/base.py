"""What every sampler shares: clip geometry, window placement, seeding, rank sharding and resumable epochs.

A sampler is a *batch* sampler: it yields this rank's batches of `SampleSpec`s. The global batch list of an
epoch is a pure function of (seed, epoch): global batch b is built from its own random stream
`default_rng([seed, BATCH, epoch, b])` (plus, for samplers that visit items in a shuffled order, one
epoch-wide permutation from `[seed, PLAN, epoch]`). Rank r of W takes global batches r, r+W, r+2W, ..., so ranks
are disjoint, every rank has the same number of batches, and a resumed rank can jump straight to its k-th batch
without replaying the ones before it.

Window placement (METHODS.md §0) lives here and only here: the longer of the two spans (usually the audio
window) is placed inside the item, the shorter one at its centre, shifted by U(−max_offsync_s, +max_offsync_s)
and clamped inside the longer span and the item. With `offsync: avid` a random training window places the video
as AVID-CMA does instead: uniformly over the audio window widened by max_offsync_s on each side (so it may reach
beyond the audio window by up to max_offsync_s), clamped inside the item. Items shorter than a clip start at 0
(the reader pads).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
from torch.utils.data import Sampler

from avcli.data.catalog import CatalogItem
from avcli.data.sample_spec import SampleSpec, Window

SEED_BITS = 62  # SampleSpec.seed is drawn from [0, 2**62)
EPS = 1e-9  # slack for float round-off in "does it fit" tests

# stream tags: each kind of random decision has its own stream, so adding draws to one never shifts another
PLAN, BATCH, REPLACE = 0, 1, 2


@dataclass(frozen=True)
class ClipGeometry:
    """The part of the recipe's `Clip` a sampler needs: video `frames` at `fps`, `audio_seconds`, offset jitter."""

    frames: int
    fps: float
    audio_seconds: float
    max_offsync_s: float = 0.0
    offsync: str = "centred"

    @classmethod
    def of(cls, clip) -> "ClipGeometry":
        """From avcli.recipe.schema.Clip or any object with those attributes (max_offsync_s, offsync optional)."""
        geometry = cls(int(clip.frames), float(clip.fps), float(clip.audio_seconds),
                       float(getattr(clip, "max_offsync_s", 0.0) or 0.0), str(getattr(clip, "offsync", "centred")))
        if geometry.frames < 1 or geometry.fps <= 0 or geometry.audio_seconds <= 0 or geometry.max_offsync_s < 0:
            raise ValueError(f"invalid clip geometry {geometry}: frames ≥ 1, fps > 0, audio_seconds > 0 and "
                             "max_offsync_s ≥ 0 are required")
        return geometry

    def spans(self, speed: int = 1) -> tuple[float, float]:
        """(video, audio) seconds of item time one window covers at `speed`× playback."""
        return self.frames * speed / self.fps, self.audio_seconds * speed

    def extent(self, speed: int = 1) -> float:
        """Seconds of item time a video+audio window occupies (the two spans overlap, the shorter inside)."""
        return max(self.spans(speed))


class Placement(NamedTuple):
    """Where a window's two spans start; unpacks like the old `window_starts` (audio first)."""

    audio_start: float
    video_start: float


def _duration(item: CatalogItem) -> float:
    return float(item.duration_s or 0.0)


def window_in_extent(extent_start: float, duration: float, clip, speed: int = 1, offset: float = 0.0) -> Placement:
    """Video+audio window whose longer span starts at `extent_start`; the shorter span sits at the longer one's
    centre moved by `offset` seconds (video later than audio for offset > 0), clamped inside it and the item."""
    geometry = clip if isinstance(clip, ClipGeometry) else ClipGeometry.of(clip)
    video, audio = geometry.spans(speed)
    if audio >= video:
        audio_start = extent_start
        video_start = audio_start + min(max((audio - video) / 2 + offset, 0.0), audio - video)
    else:
        video_start = extent_start
        audio_start = video_start + min(max((video - audio) / 2 - offset, 0.0), video - audio)
    video_start = max(min(video_start, duration - video), 0.0)
    audio_start = max(min(audio_start, duration - audio), 0.0)
    return Placement(float(audio_start), float(video_start))


def random_window(duration: float, clip, rng: np.random.Generator, speed: int = 1,
                  jitter: float | None = None) -> Placement:
    """A training window: uniformly placed in the item, audio/video offset U(−jitter, +jitter)
    (`jitter` defaults to the clip's max_offsync_s)."""
    geometry = clip if isinstance(clip, ClipGeometry) else ClipGeometry.of(clip)
    jitter = geometry.max_offsync_s if jitter is None else jitter
    if geometry.offsync == "avid" and jitter > 0:
        return _avid_window(duration, geometry, rng, speed, jitter)
    start = float(rng.random()) * max(duration - geometry.extent(speed), 0.0)
    offset = jitter * (2 * float(rng.random()) - 1) if jitter > 0 else 0.0
    return window_in_extent(start, duration, geometry, speed, offset)


def _avid_window(duration: float, geometry: ClipGeometry, rng: np.random.Generator, speed: int,
                 jitter: float) -> Placement:
    """AVID-CMA's training window (datasets/video_db.py `_sample_snippet`): the longer span uniformly in the item,
    the shorter one uniformly over [longer start − jitter, longer end + jitter − shorter], clamped to the item."""
    video, audio = geometry.spans(speed)
    longer, shorter = max(video, audio), min(video, audio)
    long_start = float(rng.random()) * max(duration - longer, 0.0)
    low = long_start - jitter
    short_start = low + float(rng.random()) * (longer + 2 * jitter - shorter)
    short_start = max(min(short_start, duration - shorter), 0.0)
    if audio >= video:
        return Placement(float(long_start), float(short_start))
    return Placement(float(short_start), float(long_start))


def centred_window(item_duration: float | None, clip, speed: int = 1) -> Placement:
    """The evaluation window: centred in the item, no audio/video offset."""
    geometry = clip if isinstance(clip, ClipGeometry) else ClipGeometry.of(clip)
    duration = float(item_duration or 0.0)
    return window_in_extent(max(duration - geometry.extent(speed), 0.0) / 2, duration, geometry, speed, 0.0)


def span_of(window: Window, clip) -> tuple[float, float]:
    """(start, end) of the item time a window reads, video and audio together."""
    geometry = clip if isinstance(clip, ClipGeometry) else ClipGeometry.of(clip)
    video, audio = geometry.spans(window.speed)
    ends = []
    if window.video_start is not None:
        ends.append((window.video_start, window.video_start + video))
    if window.audio_start is not None:
        ends.append((window.audio_start, window.audio_start + audio))
    if not ends:
        raise ValueError("an empty window (no video, no audio) has no span")
    return min(s for s, _ in ends), max(e for _, e in ends)


def disjoint_starts(rng: np.random.Generator, lo: float, hi: float, lengths: Sequence[float],
                    gap: float) -> list[float]:
    """Starts of consecutive intervals of `lengths` inside [lo, hi], pairwise ≥ `gap` apart, uniformly over all
    such layouts (sorted uniform draws of the free slack). Raises ValueError when they do not fit."""
    slack = (hi - lo) - sum(lengths) - gap * (len(lengths) - 1)
    if slack < -EPS:
        raise ValueError("intervals do not fit")
    scale = max(slack, 0.0)
    cuts = sorted(rng.random(len(lengths)).tolist())  # a list: numpy's per-call cost dwarfs two or four floats
    starts, used = [], 0.0
    for k, length in enumerate(lengths):
        starts.append(lo + cuts[k] * scale + used)
        used += length + gap
    return starts


def fits(length, n: int, size: float, gap: float):
    """Whether n disjoint intervals of `size` with `gap` between them fit into `length` (a float, or an array of
    lengths: then elementwise)."""
    return n * size + (n - 1) * gap <= length + EPS


def capacity(lengths: np.ndarray, size: float, gap: float) -> np.ndarray:
    """How many disjoint intervals of `size`, `gap` apart, fit into each of `lengths`."""
    return np.maximum(np.floor((lengths + gap + EPS) / (size + gap)), 0).astype(np.int64)


def draw_seed(rng: np.random.Generator) -> int:
    """`int(rng.integers(0, 2**62))`, the same value from the same draw: for a power-of-two range numpy's Lemire
    bound takes the top 62 bits of one 64-bit output, which is what this reads, at a quarter of the cost (one
    seed a sample, a million samples an epoch)."""
    return int(rng.bit_generator.random_raw()) >> (64 - SEED_BITS)


class SpecBatchSampler(Sampler):
    """Base class: subclasses define `_num_samples()` (global samples per epoch, before dropping the ragged
    tail), `_make_batch(epoch, b, rng)` (global batch b) and `_replace(spec, rng)`."""

    def __init__(self, items: Sequence[CatalogItem], clip, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1):
        if len(items) == 0:
            raise ValueError(f"{type(self).__name__}: no items to sample from")
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be ≥ 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"{type(self).__name__}: rank {rank} is not in 0..world_size-1 (world_size {world_size})")
        self.items = list(items)
        self.durations = np.array([_duration(item) for item in self.items], dtype=np.float64)
        self.clip = ClipGeometry.of(clip)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self._start = 0
        self._position = 0
        self._plan_cache: tuple[int, np.ndarray] | None = None

    # ------------------------------------------------------------------ randomness

    def _rng(self, *key: int) -> np.random.Generator:
        """The random stream for `key` (e.g. (BATCH, epoch, b)); a pure function of (seed, key)."""
        return np.random.default_rng([self.seed % 2**64, *(int(k) for k in key)])

    def _item_order(self, epoch: int, clips_per_item: int) -> np.ndarray:
        """The epoch's shuffled visiting order: every item `clips_per_item` times (cached for the epoch)."""
        if self._plan_cache is None or self._plan_cache[0] != epoch:
            total = len(self.items) * clips_per_item
            order = self._rng(PLAN, epoch).permutation(total) % len(self.items)
            self._plan_cache = (epoch, order)
        return self._plan_cache[1]

    # ------------------------------------------------------------------ epoch, length, iteration

    def _num_samples(self) -> int:
        raise NotImplementedError

    def _make_batch(self, epoch: int, index: int, rng: np.random.Generator) -> list[SampleSpec]:
        raise NotImplementedError

    def _replace(self, spec: SampleSpec, rng: np.random.Generator) -> SampleSpec:
        raise NotImplementedError

    def __len__(self) -> int:
        """Batches per epoch for this rank (the same on every rank; the ragged tail is dropped)."""
        return self._num_samples() // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch; the next iteration skips this rank's first `start_batch` batches (resume)."""
        if epoch < 0 or start_batch < 0:
            raise ValueError(f"epoch and start_batch must be ≥ 0, got {epoch} and {start_batch}")
        self.epoch, self._start, self._position = int(epoch), int(start_batch), int(start_batch)

    def batch(self, epoch: int, index: int) -> list[SampleSpec]:
        """Global batch `index` of `epoch` (what rank index % W yields as its batch index // W)."""
        return self._make_batch(epoch, index, self._rng(BATCH, epoch, index))

    def __iter__(self) -> Iterator[list[SampleSpec]]:
        epoch, start = self.epoch, self._start
        for k in range(start, len(self)):
            batch = self.batch(epoch, self.rank + k * self.world_size)
            self._position = k + 1  # handed out counts as consumed
            yield batch

    def state_dict(self) -> dict:
        """Where this rank stands: `start_batch` = batches handed out so far this epoch. With a prefetching
        DataLoader that runs ahead of training, store the loop's own count instead and call set_epoch with it."""
        return {"sampler": type(self).__name__, "epoch": self.epoch, "start_batch": self._position,
                "seed": self.seed, "batch_size": self.batch_size, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` stopped. A different world size keeps the global position (rounded down, so a
        few batches may be seen twice); a different seed or batch size is another random stream and refused."""
        mine = {"sampler": type(self).__name__, "seed": self.seed, "batch_size": self.batch_size}
        for key, value in mine.items():
            if key in state and state[key] != value:
                raise ValueError(f"sampler state has {key}={state[key]!r} but this sampler has {value!r}; "
                                 "resume with the same settings")
        start = int(state.get("start_batch", 0))
        old_world = int(state.get("world_size", self.world_size))
        if old_world != self.world_size:
            start = start * old_world // self.world_size
        self.set_epoch(int(state["epoch"]), start)

    # ------------------------------------------------------------------ replacement

    def replacement(self, spec: SampleSpec, attempt: int) -> SampleSpec:
        """A fresh sample of the same kind for one that failed to decode: deterministic in (seed, spec.seed,
        attempt), from a different item where the kind allows; successive attempts differ."""
        if attempt < 0:
            raise ValueError(f"attempt must be ≥ 0, got {attempt}")
        return self._replace(spec, self._rng(REPLACE, spec.seed, attempt))

    def _other_item(self, rng: np.random.Generator, avoid: Sequence[int] = (),
                    candidates: np.ndarray | None = None) -> int:
        """A uniformly random item index from `candidates` (default: all items) that is not in `avoid`, or any
        candidate when every one is avoided. O(1) in the usual case (rejection), so big catalogs stay cheap."""
        if candidates is not None and len(candidates) == 0:
            candidates = None
        size = len(self.items) if candidates is None else len(candidates)
        pick = (lambda k: k) if candidates is None else (lambda k: int(candidates[k]))
        avoid = set(avoid)
        for _ in range(32):
            item = pick(int(rng.integers(size)))
            if item not in avoid:
                return item
        pool = np.arange(len(self.items)) if candidates is None else np.asarray(candidates)
        left = pool[~np.isin(pool, list(avoid))]
        pool = left if len(left) else pool
        return int(pool[rng.integers(len(pool))])


class PerItemSampler(SpecBatchSampler):
    """Samplers whose samples each come from one item visited in the epoch's shuffled order (uniform, temporal):
    a batch is the next `batch_size` items of the order, each turned into a sample by `_sample`; a replacement is
    a fresh sample of another item."""

    def _sample(self, item: int, rng: np.random.Generator) -> SampleSpec:
        raise NotImplementedError

    def _make_batch(self, epoch: int, index: int, rng: np.random.Generator) -> list[SampleSpec]:
        order = self._item_order(epoch, self.clips_per_item)
        chosen = order[index * self.batch_size:(index + 1) * self.batch_size]
        return [self._sample(int(item), rng) for item in chosen]

    def _replace(self, spec: SampleSpec, rng: np.random.Generator) -> SampleSpec:
        return self._sample(self._other_item(rng, avoid=[spec.windows[0].item]), rng)

