"""Hierarchical sampling for long-form titles (Kalayeh et al., METHODS.md §5).

A batch is T titles × C clips (batch_size = T·C): T distinct titles, then C pairwise time-disjoint clips of each,
so in-batch negatives include C − 1 hard negatives from the same title. C = 1 is uniform sampling over titles.
With level="show", a batch holds T distinct shows and each show's C clips come from distinct episodes while it
has enough of them. Batches are laid out title by title: specs [t·C, (t+1)·C) belong to title t, and every
spec carries labels {"title": t}.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np

from avcli.data.catalog import CatalogItem
from avcli.data.sample_spec import SampleSpec, Window
from avcli.data.samplers.base import (EPS, SpecBatchSampler, capacity, disjoint_starts, draw_seed, fits,
                                      random_window, window_in_extent)


@dataclass(frozen=True)
class _Segment:
    """A stretch [lo, hi] of one item that can hold up to `cap` clips; `episode` numbers the item's title
    within its group (for level="show")."""

    item: int
    lo: float
    hi: float
    episode: int
    cap: int


@dataclass
class _Group:
    whole: list[_Segment]  # shots="any": whole items
    single_shots: list[_Segment]  # shots="different": one clip per shot, shots shrunk by min_gap/2 at cuts
    roomy_shots: list[_Segment]  # shots="same": shots that hold all C clips


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

    def _build_groups(self) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
        """Items per group (title, or show at level="show"), each item's episode (its title), item → group."""
        groups: dict[str, int] = {}
        titles: dict[str, int] = {}
        members: list[list[int]] = []
        episodes, group_of = np.zeros(len(self.items), dtype=np.int64), np.zeros(len(self.items), dtype=np.int64)
        for i, item in enumerate(self.items):
            title = f"title:{item.title_id}" if item.title_id is not None else f"item:{i}"
            key = f"show:{item.show_id}" if self.level == "show" and item.show_id is not None else title
            g = groups.setdefault(key, len(groups))
            if g == len(members):
                members.append([])
            members[g].append(i)
            group_of[i], episodes[i] = g, titles.setdefault(title, len(titles))
        return members, episodes, group_of

    def _group(self, g: int) -> _Group:
        """The group's segments for each shots mode, built the first time the group is drawn."""
        if g in self._segments:
            return self._segments[g]
        size, gap, n = self.length, self.min_gap_s, self.clips_per_title
        whole, single, roomy = [], [], []
        for i in self.members[g]:
            duration, episode = float(self.durations[i]), int(self.episodes[i])
            whole.append(_Segment(i, 0.0, duration, episode, max(capacity(duration, size, gap), 1)))
            if self.shots == "any":
                continue
            cuts = [0.0] + sorted(c for c in map(float, self.items[i].shots or []) if 0 < c < duration) + [duration]
            for k in range(len(cuts) - 1):
                if fits(cuts[k + 1] - cuts[k], n, size, gap):
                    roomy.append(_Segment(i, cuts[k], cuts[k + 1], episode, n))
                lo = cuts[k] + (gap / 2 if k > 0 else 0.0)  # shrunk at cuts: clips in adjacent shots keep the gap
                hi = cuts[k + 1] - (gap / 2 if k + 1 < len(cuts) - 1 else 0.0)
                if fits(hi - lo, 1, size, gap):
                    single.append(_Segment(i, lo, hi, episode, 1))
        self._segments[g] = _Group(whole, single, roomy)
        return self._segments[g]

    # ------------------------------------------------------------------ sampling

    def _num_samples(self) -> int:
        return len(self.items) * self.clips_per_item

    def _allocate(self, segments: list[_Segment], n: int, rng: np.random.Generator) -> list[tuple[_Segment, int]]:
        """n clips over segments, each pick ∝ segment length among those with room; at level="show" unused
        episodes first. Returns (segment, clips) pairs in segment order."""
        counts, used = [0] * len(segments), set()
        for _ in range(n):
            open_ = [k for k, s in enumerate(segments) if counts[k] < s.cap]
            fresh = [k for k in open_ if segments[k].episode not in used]
            if self.level == "show" and fresh:
                open_ = fresh
            weights = np.array([max(segments[k].hi - segments[k].lo, EPS) for k in open_])
            pick = open_[int(rng.choice(len(open_), p=weights / weights.sum()))]
            counts[pick] += 1
            used.add(segments[pick].episode)
        return [(s, c) for s, c in zip(segments, counts, strict=True) if c]

    def _title_clips(self, group: _Group, rng: np.random.Generator) -> list[Window]:
        n = self.clips_per_title
        if self.shots == "same" and group.roomy_shots:
            weights = np.array([s.hi - s.lo for s in group.roomy_shots])
            plan = [(group.roomy_shots[int(rng.choice(len(weights), p=weights / weights.sum()))], n)]
        elif self.shots == "different" and len(group.single_shots) >= n:
            plan = self._allocate(group.single_shots, n, rng)
        else:
            plan = self._allocate(group.whole, n, rng)
        windows = []
        for segment, count in plan:
            if fits(segment.hi - segment.lo, count, self.length, self.min_gap_s):
                starts = disjoint_starts(rng, segment.lo, segment.hi, [self.length] * count, self.min_gap_s)
            else:  # a single clip in an item shorter than a clip: the reader pads
                starts = [segment.lo]
            duration = float(self.durations[segment.item])
            for start in starts:
                jitter = self.clip.max_offsync_s
                offset = jitter * (2 * float(rng.random()) - 1) if jitter > 0 else 0.0
                audio_start, video_start = window_in_extent(start, duration, self.clip, 1, offset)
                windows.append(Window(segment.item, video_start, audio_start))
        return windows

    def _make_batch(self, epoch: int, index: int, rng: np.random.Generator) -> list[SampleSpec]:
        # T distinct titles ∝ weight, without replacement: the T largest log-weight + Gumbel keys
        keys = self.log_weights + rng.gumbel(size=len(self.qualified))
        top = np.argpartition(-keys, self.titles_per_batch - 1)[: self.titles_per_batch]
        top = top[np.argsort(-keys[top], kind="stable")]
        batch = []
        for t, g in enumerate(self.qualified[top]):
            for window in self._title_clips(self._group(int(g)), rng):
                batch.append(SampleSpec((window,), draw_seed(rng), {"title": t}, self.kind))
        return batch

    def _replace(self, spec: SampleSpec, rng: np.random.Generator) -> SampleSpec:
        """Another clip of the same title (show), from another of its items when it has one; with a single item
        the new window is random and may overlap the title's other clips in that batch."""
        failed = spec.windows[0].item
        members = [i for i in self.members[self.group_of[failed]] if i != failed] or [failed]
        weights = np.maximum(self.durations[members], EPS)
        item = members[int(rng.choice(len(members), p=weights / weights.sum()))]
        audio_start, video_start = random_window(float(self.durations[item]), self.clip, rng)
        return SampleSpec((Window(item, video_start, audio_start),), draw_seed(rng), dict(spec.labels), self.kind)
