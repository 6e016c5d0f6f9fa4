"""Hierarchical sampling for long-form titles (Kalayeh et al., METHODS.md §5).

A batch is T titles × C clips (batch_size = T·C): T distinct titles, then C pairwise time-disjoint clips of each,
so in-batch negatives include C − 1 hard negatives from the same title. C = 1 is uniform sampling over titles.
With level="show", a batch holds T distinct shows and each show's C clips come from distinct episodes while it
has enough of them. Batches are laid out title by title: specs [t·C, (t+1)·C) belong to title t, and every
spec carries labels {"title": t}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np

from avcli.data.catalog import CatalogItem
from avcli.data.sample_spec import SampleSpec, Window
from avcli.data.samplers.base import (EPS, SpecBatchSampler, capacity, disjoint_starts, draw_seed, fits,
                                      random_window, window_in_extent)


@dataclass(frozen=True)
class _Segments:
    """Stretches [lo, hi] of items, entry k holding up to cap[k] clips; `episode` numbers the item's title within
    its group (for level="show"). Arrays rather than an object per segment: a million items' worth stays small."""

    item: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    episode: np.ndarray
    cap: np.ndarray

    def __len__(self) -> int:
        return len(self.item)


@dataclass
class _Group:
    whole: _Segments  # shots="any": whole items
    single_shots: _Segments  # shots="different": one clip per shot, shots shrunk by min_gap/2 at cuts
    roomy_shots: _Segments  # shots="same": shots that hold all C clips


# groups' segments kept between draws; at a million items a rank draws each of ~10⁵ titles about once an epoch,
# so an unbounded cache only grows (hundreds of MB), while rebuilding a group costs tens of microseconds
MAX_CACHED_GROUPS = 4096


def _choice(rng: np.random.Generator, p: np.ndarray) -> int:
    """`int(rng.choice(len(p), p=p))` with the same draw (one uniform double against the normalised cumulative
    sum), without choice()'s argument checks, which cost more than the draw for the few segments of a title."""
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return int(np.searchsorted(cdf, rng.random(), side="right"))


class HierarchicalSampler(SpecBatchSampler):
    """T titles × C time-disjoint clips per batch.

    Options: `clips_per_title` C (default 4; batch_size must be a multiple), `title_weighting` "uniform"
    (default) or "duration" (∝ total duration of the title's items), `shots` "any" (default) | "same" (all C
    clips inside one shot; falls back to "any" for a title without a long enough shot) | "different" (each clip
    in its own shot; falls back to "any" for a title with fewer than C long enough shots), `level` "title"
    (default) | "show", `min_gap_s` between clips of one item (default 0), `clips_per_item` (epoch length:
    len(items)·clips_per_item clips, i.e. that many // batch_size global batches; titles are drawn afresh for
    every batch, so an epoch is a budget of clips rather than one visit per title). Items without a title_id are
    titles of their own; with level="show", items without a show_id fall back to their title. A title that cannot
    hold C disjoint clips is never drawn; fewer than T titles that can is a ValueError.
    """

    kind = "hierarchical"

    def __init__(self, items: Sequence[CatalogItem], clip, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, *, clips_per_title: int = 4, title_weighting: str = "uniform",
                 shots: str = "any", level: str = "title", min_gap_s: float = 0.0, clips_per_item: int = 1):
        super().__init__(items, clip, batch_size, seed, rank, world_size)
        for name, value, allowed in (("title_weighting", title_weighting, ("uniform", "duration")),
                                     ("shots", shots, ("any", "same", "different")),
                                     ("level", level, ("title", "show"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if clips_per_title < 1 or batch_size % clips_per_title:
            raise ValueError(f"batch_size {batch_size} must be a positive multiple of clips_per_title "
                             f"{clips_per_title}")
        if min_gap_s < 0 or clips_per_item < 1:
            raise ValueError("min_gap_s must be ≥ 0 and clips_per_item ≥ 1")
        if level == "show" and shots == "same":
            raise ValueError("shots='same' needs level='title' (a show's clips come from different episodes)")
        self.clips_per_title, self.titles_per_batch = int(clips_per_title), batch_size // clips_per_title
        self.title_weighting, self.shots, self.level = title_weighting, shots, level
        self.min_gap_s, self.clips_per_item = float(min_gap_s), int(clips_per_item)
        self.length = self.clip.extent()  # one clip's video+audio extent at speed 1

        self.members, self.episodes, self.group_of = self._build_groups()
        size, gap = self.length, self.min_gap_s
        item_caps = np.maximum(np.floor((self.durations + gap + EPS) / (size + gap)), 1)  # a short item: 1 clip
        group_caps = np.bincount(self.group_of, weights=item_caps, minlength=len(self.members))
        qualified = np.flatnonzero(group_caps >= self.clips_per_title)
        if len(qualified) < self.titles_per_batch:
            unit = "shows" if level == "show" else "titles"
            raise ValueError(
                f"hierarchical sampling needs {self.titles_per_batch} {unit} per batch (batch_size {batch_size} / "
                f"clips_per_title {clips_per_title}) that each fit {clips_per_title} time-disjoint clips of "
                f"{self.length:g} s with min_gap_s {min_gap_s:g}, but only {len(qualified)} of {len(self.members)} "
                f"{unit} do; lower batch_size or clips_per_title, or add longer {unit}")
        self.qualified = qualified
        if title_weighting == "duration":  # total duration of the title's items
            weights = np.bincount(self.group_of, weights=self.durations, minlength=len(self.members))[qualified]
        else:
            weights = np.ones(len(qualified))
        self.log_weights = np.log(np.maximum(weights, 1e-12))
        self._segments: dict[int, _Group] = {}

    # ------------------------------------------------------------------ structure

    def _build_groups(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Items per group (title, or show at level="show"), each item's episode (its title), item → group.
        Groups and titles are numbered in order of first appearance."""
        groups: dict = {}
        titles: dict = {}
        episodes, group_of = [], []
        by_show = self.level == "show"
        for i, item in enumerate(self.items):
            # keys: a title's id as text, an untitled item its index (an int never equals a str), a show a tuple
            title = item.title_id if item.title_id is None or type(item.title_id) is str else str(item.title_id)
            title = i if title is None else title
            episodes.append(titles.setdefault(title, len(titles)))
            key = (str(item.show_id),) if by_show and item.show_id is not None else title
            group_of.append(groups.setdefault(key, len(groups)))
        group_of = np.array(group_of, dtype=np.int64)
        # members in item order: a stable sort by group, cut at each group's count
        order = np.argsort(group_of, kind="stable")
        members = np.split(order, np.cumsum(np.bincount(group_of, minlength=len(groups)))[:-1])
        return members, np.array(episodes, dtype=np.int64), group_of

    def _group(self, g: int) -> _Group:
        """The group's segments for each shots mode, built when the group is drawn (and kept a while)."""
        cached = self._segments.get(g)
        if cached is not None:
            return cached
        size, gap, n = self.length, self.min_gap_s, self.clips_per_title
        members = self.members[g]
        durations, episodes = self.durations[members], self.episodes[members]
        caps = np.maximum(capacity(durations, size, gap), 1)
        whole = _Segments(members, np.zeros(len(members)), durations, episodes, caps)
        single = roomy = _Segments(*(np.zeros(0, dtype) for dtype in (np.int64, float, float, np.int64, np.int64)))
        if self.shots != "any":
            owner, lo, hi, first, last = [], [], [], [], []  # one entry per shot of each member
            for j, i in enumerate(members.tolist()):
                duration = float(durations[j])
                cuts = [0.0] + sorted(c for c in map(float, self.items[i].shots or []) if 0 < c < duration) + [duration]
                m = len(cuts) - 1
                owner += [j] * m
                lo += cuts[:-1]
                hi += cuts[1:]
                first += [True] + [False] * (m - 1)
                last += [False] * (m - 1) + [True]
            owner, lo, hi = np.array(owner, dtype=np.int64), np.array(lo), np.array(hi)
            keep = np.flatnonzero(fits(hi - lo, n, size, gap))  # shots that hold all n clips
            roomy = _Segments(members[owner[keep]], lo[keep], hi[keep], episodes[owner[keep]],
                              np.full(len(keep), n, dtype=np.int64))
            # shrunk at cuts: clips in adjacent shots keep the gap
            lo = lo + np.where(first, 0.0, gap / 2)
            hi = hi - np.where(last, 0.0, gap / 2)
            keep = np.flatnonzero(fits(hi - lo, 1, size, gap))
            single = _Segments(members[owner[keep]], lo[keep], hi[keep], episodes[owner[keep]],
                               np.ones(len(keep), dtype=np.int64))
        if len(self._segments) >= MAX_CACHED_GROUPS:
            self._segments.clear()
        self._segments[g] = _Group(whole, single, roomy)
        return self._segments[g]

    # ------------------------------------------------------------------ sampling

    def _num_samples(self) -> int:
        return len(self.items) * self.clips_per_item

    def _allocate(self, segments: _Segments, n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        """n clips over segments, each pick ∝ segment length among those with room; at level="show" unused
        episodes first. Returns (segment index, clips) pairs in segment order."""
        counts, used = np.zeros(len(segments), dtype=np.int64), []
        lengths = np.maximum(segments.hi - segments.lo, EPS)
        for _ in range(n):
            open_ = np.flatnonzero(counts < segments.cap)
            if self.level == "show":
                fresh = open_[~np.isin(segments.episode[open_], used)]
                if len(fresh):
                    open_ = fresh
            weights = lengths[open_]
            pick = int(open_[_choice(rng, weights / weights.sum())])
            counts[pick] += 1
            used.append(int(segments.episode[pick]))
        return [(int(k), int(counts[k])) for k in np.flatnonzero(counts)]

    def _title_clips(self, group: _Group, rng: np.random.Generator) -> list[Window]:
        n = self.clips_per_title
        if self.shots == "same" and len(group.roomy_shots):
            segments = group.roomy_shots
            weights = segments.hi - segments.lo
            plan = [(_choice(rng, weights / weights.sum()), n)]
        elif self.shots == "different" and len(group.single_shots) >= n:
            segments = group.single_shots
            plan = self._allocate(segments, n, rng)
        else:
            segments = group.whole
            plan = self._allocate(segments, n, rng)
        windows = []
        for k, count in plan:
            item, lo, hi = int(segments.item[k]), float(segments.lo[k]), float(segments.hi[k])
            if fits(hi - lo, count, self.length, self.min_gap_s):
                starts = disjoint_starts(rng, lo, hi, [self.length] * count, self.min_gap_s)
            else:  # a single clip in an item shorter than a clip: the reader pads
                starts = [lo]
            duration = float(self.durations[item])
            for start in starts:
                jitter = self.clip.max_offsync_s
                offset = jitter * (2 * float(rng.random()) - 1) if jitter > 0 else 0.0
                audio_start, video_start = window_in_extent(start, duration, self.clip, 1, offset)
                windows.append(Window(item, video_start, audio_start))
        return windows

    def _top_titles(self, rng: np.random.Generator) -> np.ndarray:
        """Positions in `qualified` of the batch's T titles, highest key first, the key of title q being
        log_weights[q] + Gumbel noise (T distinct titles ∝ weight, without replacement). The same titles in the
        same order as keying every title with `rng.gumbel(size=Q)` and taking the T largest, with the same use of
        the random stream, but without Q Gumbel variates per batch (125,000 titles × 2,000 batches an epoch at a
        million items): numpy's Gumbel draw is U = 1 − u, g = −log(−log U) for one uniform double u each."""
        T, Q = self.titles_per_batch, len(self.qualified)
        state = rng.bit_generator.state
        u = rng.random(Q)
        if not u.all():  # u = 0 makes numpy's Gumbel draw again (a 2⁻⁵³ chance a draw): replay it exactly
            rng.bit_generator.state = state
            keys = self.log_weights + rng.gumbel(size=Q)
            top = np.argpartition(-keys, T - 1)[:T]
            return top[np.argsort(-keys[top], kind="stable")]
        if self.title_weighting == "uniform":  # equal weights: the key rises as u falls
            top = np.argpartition(u, T - 1)[:T]
            return top[np.argsort(u[top], kind="stable")]
        # unequal weights: vectorised keys (within a few ulps) pick the candidates, exact ones (libm's log, as
        # numpy's Gumbel uses) rank them
        approx = self.log_weights - np.log(-np.log1p(-u))
        kth = np.partition(approx, Q - T)[Q - T]
        candidates = np.flatnonzero(approx >= kth - 1e-9 * max(1.0, abs(float(kth))))
        noise = np.array([0.0 - 1.0 * math.log(-math.log(1.0 - x)) for x in u[candidates].tolist()])
        keys = self.log_weights[candidates] + noise
        return candidates[np.argsort(-keys, kind="stable")[:T]]

    def _make_batch(self, epoch: int, index: int, rng: np.random.Generator) -> list[SampleSpec]:
        batch = []
        for t, g in enumerate(self.qualified[self._top_titles(rng)]):
            for window in self._title_clips(self._group(int(g)), rng):
                batch.append(SampleSpec((window,), draw_seed(rng), {"title": t}, self.kind))
        return batch

    def _replace(self, spec: SampleSpec, rng: np.random.Generator) -> SampleSpec:
        """Another clip of the same title (show), from another of its items when it has one; with a single item
        the new window is random and may overlap the title's other clips in that batch."""
        failed = spec.windows[0].item
        members = [i for i in self.members[self.group_of[failed]].tolist() if i != failed] or [failed]
        weights = np.maximum(self.durations[members], EPS)
        item = members[int(rng.choice(len(members), p=weights / weights.sum()))]
        audio_start, video_start = random_window(float(self.durations[item]), self.clip, rng)
        return SampleSpec((Window(item, video_start, audio_start),), draw_seed(rng), dict(spec.labels), self.kind)
