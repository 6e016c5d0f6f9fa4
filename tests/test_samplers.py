"""Samplers: determinism, rank sharding, resume, window geometry and each method's sampling rules.

Pure Python on hand-made CatalogItems; nothing is decoded. Clip geometry throughout: 8 frames at 16 fps
(0.5 s of video) inside 2 s of audio, so one video+audio window spans 2 s of item time.
"""

from __future__ import annotations

import itertools
from collections import Counter
from types import SimpleNamespace

import pytest

from avcli.data.catalog import CatalogItem
from avcli.data.samplers import (HierarchicalSampler, SyncPairSampler, TemporalSampler, UniformSampler,
                                 centred_window, random_window, span_of)
from avcli.data.samplers.base import ClipGeometry
from avcli.recipe.schema import Clip

CLIP = SimpleNamespace(frames=8, fps=16.0, audio_seconds=2.0, max_offsync_s=0.5)
VIDEO, AUDIO = 0.5, 2.0
TOL = 1e-9


def item(i: int, duration: float, title: str | None = None, shots=(), show: str | None = None) -> CatalogItem:
    return CatalogItem(item_id=f"i{i}", path=f"/media/{i}.mp4", status="ok", duration_s=duration, title_id=title,
                       show_id=show, shots=list(shots))


def catalog(n: int = 48) -> list[CatalogItem]:
    """n items, 12 titles of 4 items each, 1.5 s to 40 s long (a few shorter than one clip)."""
    return [item(i, [1.5, 3.0, 8.0, 40.0][i % 4] + (i % 7), f"t{i // 4}", shots=[1.0, 4.0]) for i in range(n)]


FACTORIES = {
    "uniform": lambda items, **kw: UniformSampler(items, CLIP, 4, **kw),
    "hierarchical": lambda items, **kw: HierarchicalSampler(items, CLIP, 4, clips_per_title=2, **kw),
    "sync": lambda items, **kw: SyncPairSampler(items, CLIP, 4, switch_epoch=1, superhard_fraction=0.25, **kw),
    "temporal": lambda items, **kw: TemporalSampler(items, CLIP, 4, **kw),
}
KINDS = sorted(FACTORIES)


def make(kind: str, seed: int = 7, rank: int = 0, world_size: int = 1, items=None, epoch: int = 0):
    sampler = FACTORIES[kind](items if items is not None else catalog(), seed=seed, rank=rank, world_size=world_size)
    sampler.set_epoch(epoch)
    return sampler


def key(spec):
    """What makes a sample itself: its windows (items and times) — random floats, so distinct samples differ."""
    return spec.windows


def assert_inside(spec, items, clip=CLIP):
    geometry = ClipGeometry.of(clip)
    for window in spec.windows:
        duration = items[window.item].duration_s
        video, audio = geometry.spans(window.speed)
        for start, span in ((window.video_start, video), (window.audio_start, audio)):
            if start is not None:
                assert start >= -TOL
                assert start + span <= max(duration, span) + TOL  # shorter items start at 0 and are padded


# ------------------------------------------------------------------------------------------------ shared contract


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_and_epoch_give_the_same_batches_and_other_epochs_differ(kind):
    first = list(make(kind, epoch=1))
    assert first == list(make(kind, epoch=1))
    assert len(first) == 12 and all(len(batch) == 4 for batch in first)
    assert first != list(make(kind, epoch=2))
    assert first != list(make(kind, seed=8, epoch=1))
    seeds = [spec.seed for batch in first for spec in batch]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**62 for s in seeds)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_take_disjoint_equal_shares_of_one_global_epoch(kind, world_size):
    items = catalog(50)  # 50 items / batch 4 = 12 global batches (ragged tail of 2 dropped)
    single = list(make(kind, items=items, epoch=3))
    shares = [list(make(kind, items=items, rank=r, world_size=world_size, epoch=3)) for r in range(world_size)]
    assert {len(share) for share in shares} == {12 // world_size}
    assert all(len(make(kind, items=items, rank=r, world_size=world_size)) == 12 // world_size
               for r in range(world_size))
    for r, share in enumerate(shares):  # rank r holds global batches r, r+W, ...
        assert share == single[r::world_size][: len(share)]
    seen = [{key(spec) for batch in share for spec in batch} for share in shares]
    for a, b in itertools.combinations(seen, 2):
        assert not a & b
    if kind in ("uniform", "temporal", "sync"):  # one visit per item: no item is the anchor on two ranks
        anchors = [{spec.windows[0].item for batch in share for spec in batch} for share in shares]
        for a, b in itertools.combinations(anchors, 2):
            assert not a & b


@pytest.mark.parametrize("kind", KINDS)
def test_resume_mid_epoch_continues_the_uninterrupted_epoch(kind):
    full = list(make(kind, rank=1, world_size=2, epoch=2))
    resumed = make(kind, rank=1, world_size=2)
    resumed.set_epoch(2, start_batch=2)
    assert list(resumed) == full[2:]
    assert len(resumed) == len(full)  # the epoch's length, not what is left of it

    running = make(kind, rank=1, world_size=2, epoch=2)
    it = iter(running)
    taken = [next(it) for _ in range(3)]
    state = running.state_dict()
    assert state["epoch"] == 2 and state["start_batch"] == 3
    restored = make(kind, rank=1, world_size=2)
    restored.load_state_dict(state)
    assert taken + list(restored) == full


def test_state_dict_refuses_another_stream_and_maps_a_new_world_size():
    running = make("uniform", world_size=2, epoch=1)
    running.set_epoch(1, start_batch=3)  # 6 global batches done
    state = running.state_dict()
    with pytest.raises(ValueError, match="seed"):
        make("uniform", seed=99, world_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="sampler"):
        make("temporal", world_size=2).load_state_dict(state)
    wider = make("uniform", rank=0, world_size=3)
    wider.load_state_dict(state)
    assert wider.state_dict()["start_batch"] == 2 and wider.epoch == 1
    assert next(iter(wider)) == list(make("uniform", epoch=1))[6]


@pytest.mark.parametrize("kind", KINDS)
def test_windows_lie_inside_their_items(kind):
    items = catalog()
    for epoch in range(3):
        for batch in make(kind, items=items, epoch=epoch):
            for spec in batch:
                assert_inside(spec, items)


@pytest.mark.parametrize("kind", KINDS)
def test_replacement_keeps_the_kind_is_deterministic_and_differs_per_attempt(kind):
    sampler = make(kind, epoch=1)
    for spec in [s for batch in sampler for s in batch][:24]:
        first, again, second = (sampler.replacement(spec, 0), sampler.replacement(spec, 0),
                                sampler.replacement(spec, 1))
        assert first == again
        assert first.kind == spec.kind and second.kind == spec.kind
        assert first.windows != second.windows and first.seed != spec.seed
        assert_inside(first, sampler.items)
        if kind in ("uniform", "temporal", "sync"):
            assert first.windows[0].item != spec.windows[0].item
        if kind == "hierarchical":  # stays in the title (and keeps its label); other items of it first
            assert sampler.items[first.windows[0].item].title_id == sampler.items[spec.windows[0].item].title_id
            assert first.labels == spec.labels and first.windows[0].item != spec.windows[0].item
        if kind == "sync":
            assert first.labels["negative"] == spec.labels["negative"]


def test_window_placement_centres_the_video_and_bounds_the_offset():
    centred = centred_window(10.0, CLIP)
    assert centred.audio_start == pytest.approx(4.0) and centred.video_start == pytest.approx(4.75)
    short = centred_window(1.0, CLIP)  # shorter than a clip: starts at 0, the reader pads
    assert short.audio_start == 0.0 and 0.0 <= short.video_start <= 0.5
    fast = centred_window(20.0, Clip(frames=8, fps=16, audio_seconds=2.0), speed=4)  # the recipe's Clip works too
    assert fast.audio_start == pytest.approx(6.0) and fast.video_start == pytest.approx(9.0)
    import numpy as np

    rng = np.random.default_rng(0)
    offsets = []
    for _ in range(500):
        audio_start, video_start = random_window(30.0, CLIP, rng)
        assert 0 <= audio_start <= 28.0 + TOL and audio_start <= video_start <= audio_start + 1.5 + TOL
        offsets.append(video_start - audio_start - 0.75)
    assert max(offsets) <= 0.5 + TOL and min(offsets) >= -0.5 - TOL and max(offsets) - min(offsets) > 0.8
    video_longer = SimpleNamespace(frames=32, fps=16.0, audio_seconds=1.0, max_offsync_s=0.0)
    assert centred_window(10.0, video_longer) == (4.5, 4.0)


# ------------------------------------------------------------------------------------------------ hierarchical


def movies() -> list[CatalogItem]:
    """8 titles of 1-2 items (parts), 7-60 s, plus one title too short for 2 clips."""
    items = [item(i, 7.0 + 7 * i, f"m{i}", shots=[3.0 + i, 6.5 + 2 * i]) for i in range(8)]
    items += [item(8 + i, 12.0, f"m{i}") for i in range(0, 8, 3)]  # second parts
    items += [item(20, 3.0, "tiny")]
    return items


def overlap_gap(a, b):
    (_, first_end), (second_start, _) = sorted([a, b])
    return second_start - first_end  # < 0: they overlap


def check_title_batches(sampler, epochs=range(4), gap=0.0):
    T, C = sampler.titles_per_batch, sampler.clips_per_title
    for epoch in epochs:
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert len(batch) == T * C
            assert [spec.labels["title"] for spec in batch] == [t for t in range(T) for _ in range(C)]
            assert {spec.kind for spec in batch} == {"hierarchical"}
            groups = [batch[t * C:(t + 1) * C] for t in range(T)]
            yield groups
            for clips in groups:
                for a, b in itertools.combinations(clips, 2):
                    if a.windows[0].item == b.windows[0].item:
                        assert overlap_gap(span_of(a.windows[0], CLIP), span_of(b.windows[0], CLIP)) >= gap - TOL


def test_hierarchical_batches_are_T_distinct_titles_of_C_disjoint_clips():
    items = movies()
    sampler = HierarchicalSampler(items, CLIP, 12, seed=1, clips_per_title=3, min_gap_s=0.7)
    assert len(sampler) == len(items) // 12
    seen = Counter()
    for groups in check_title_batches(sampler, gap=0.7):
        titles = [{items[s.windows[0].item].title_id for s in clips} for clips in groups]
        assert all(len(t) == 1 for t in titles)
        assert len({t.pop() for t in titles}) == 4
        for clips in groups:
            seen[items[clips[0].windows[0].item].title_id] += 1
            for spec in clips:
                assert_inside(spec, items)
    assert "tiny" not in seen and len(seen) == 8  # 3 s cannot hold 3 disjoint 2 s clips


def test_hierarchical_spreads_a_title_over_its_parts_and_refuses_impossible_batches():
    parts = [item(0, 5.0, "a"), item(1, 2.5, "a"), item(2, 9.0, "b"), item(3, 9.0, "c")]
    sampler = HierarchicalSampler(parts, CLIP, 6, seed=0, clips_per_title=3, clips_per_item=6)
    used = Counter()
    for groups in check_title_batches(sampler):
        for clips in groups:
            if parts[clips[0].windows[0].item].title_id == "a":  # 2 + 1 clips: both parts are needed
                assert sorted(Counter(s.windows[0].item for s in clips).values()) == [1, 2]
            used.update(s.windows[0].item for s in clips)
    assert used[0] and used[1]
    with pytest.raises(ValueError, match="only 2 of 3 titles"):
        HierarchicalSampler(parts, CLIP, 9, seed=0, clips_per_title=3, min_gap_s=1.1)
    with pytest.raises(ValueError, match="multiple"):
        HierarchicalSampler(parts, CLIP, 7, seed=0, clips_per_title=3)


def test_hierarchical_same_shot_keeps_a_title_inside_one_shot():
    items = [item(i, 30.0, f"s{i}", shots=[4.0, 11.0 + i, 14.0 + i]) for i in range(6)]
    items.append(item(6, 30.0, "choppy", shots=[3.0 * k for k in range(1, 10)]))  # no shot holds 2 clips
    sampler = HierarchicalSampler(items, CLIP, 4, seed=3, clips_per_title=2, shots="same", min_gap_s=0.2)
    fallback = 0
    for groups in check_title_batches(sampler, epochs=range(6), gap=0.2):
        for clips in groups:
            source = items[clips[0].windows[0].item]
            cuts = [0.0, *source.shots, source.duration_s]
            shot_of = {next(k for k in range(len(cuts) - 1) if cuts[k] - TOL <= lo and hi <= cuts[k + 1] + TOL)
                       if any(cuts[k] - TOL <= lo and hi <= cuts[k + 1] + TOL for k in range(len(cuts) - 1))
                       else None
                       for lo, hi in (span_of(s.windows[0], CLIP) for s in clips)}
            assert len({s.windows[0].item for s in clips}) == 1
            if source.title_id == "choppy":
                fallback += 1  # falls back to "any": still disjoint, in one item
            else:
                assert len(shot_of) == 1 and None not in shot_of
    assert fallback


def test_hierarchical_different_shots_put_each_clip_in_its_own_shot():
    items = [item(i, 24.0, f"d{i}", shots=[5.0, 7.1, 12.0, 18.0]) for i in range(5)]
    sampler = HierarchicalSampler(items, CLIP, 8, seed=5, clips_per_title=4, shots="different", min_gap_s=0.4)
    for groups in check_title_batches(sampler, epochs=range(8), gap=0.4):
        for clips in groups:
            cuts = [0.0, 5.0, 7.1, 12.0, 18.0, 24.0]
            shots = []
            for spec in clips:
                lo, hi = span_of(spec.windows[0], CLIP)
                inside = [k for k in range(5) if cuts[k] - TOL <= lo and hi <= cuts[k + 1] + TOL]
                assert len(inside) == 1
                shots.append(inside[0])
            assert len(set(shots)) == 4


def test_hierarchical_show_level_takes_distinct_shows_and_episodes():
    items = []
    for show in range(5):  # shows 0-3: 4 episodes; show 4: one long episode
        for episode in range(4 if show < 4 else 1):
            items.append(item(len(items), 30.0, f"show{show}e{episode}", show=f"show{show}"))
    sampler = HierarchicalSampler(items, CLIP, 9, seed=2, clips_per_title=3, level="show", clips_per_item=4,
                                  min_gap_s=0.1)
    saw_single = False
    for groups in check_title_batches(sampler, epochs=range(5), gap=0.1):
        shows = [items[clips[0].windows[0].item].show_id for clips in groups]
        assert len(set(shows)) == 3
        for clips in groups:
            assert len({items[s.windows[0].item].show_id for s in clips}) == 1
            episodes = {items[s.windows[0].item].title_id for s in clips}
            if clips[0].windows[0].item == len(items) - 1:
                saw_single = True  # too few episodes: repeats of one episode, disjoint windows
            else:
                assert len(episodes) == 3
    assert saw_single
    with pytest.raises(ValueError, match="same"):
        HierarchicalSampler(items, CLIP, 9, seed=2, clips_per_title=3, level="show", shots="same")


def test_hierarchical_one_clip_per_title_is_uniform_over_titles():
    items = movies()
    sampler = HierarchicalSampler(items, CLIP, 6, seed=4, clips_per_title=1, clips_per_item=20)
    counts = Counter()
    for groups in check_title_batches(sampler):
        titles = [items[clips[0].windows[0].item].title_id for clips in groups]
        assert len(set(titles)) == 6
        counts.update(titles)
    assert set(counts) == {f"m{i}" for i in range(8)} | {"tiny"}  # one clip fits any title
    assert max(counts.values()) < 2 * min(counts.values())


def test_hierarchical_duration_weighting_favours_long_titles():
    items = [item(0, 400.0, "long"), item(1, 10.0, "short")] + [item(i, 40.0, f"x{i}") for i in range(2, 8)]
    counts = {}
    for weighting in ("uniform", "duration"):
        sampler = HierarchicalSampler(items, CLIP, 2, seed=0, clips_per_title=1, title_weighting=weighting,
                                      clips_per_item=50)
        counts[weighting] = Counter(items[b[0].windows[0].item].title_id for b in sampler)
    assert counts["duration"]["long"] > 4 * counts["duration"]["short"]
    assert counts["uniform"]["long"] < 2 * counts["uniform"]["short"]


# ------------------------------------------------------------------------------------------------ sync pairs


def sync_items(n=40, duration=12.0):
    return [item(i, duration + (i % 5), f"v{i}") for i in range(n)]


def check_pair(spec, items, min_gap=0.5, min_shift=0.1):
    video_window, audio_window = spec.windows
    assert video_window.audio_start is None and audio_window.video_start is None
    video = (video_window.video_start, video_window.video_start + VIDEO)
    audio = (audio_window.audio_start, audio_window.audio_start + AUDIO)
    negative = spec.labels["negative"]
    assert spec.kind == ("positive" if negative == "none" else negative)
    assert spec.labels["sync"] == int(negative == "none")
    if negative == "easy":
        assert audio_window.item != video_window.item
        return
    assert audio_window.item == video_window.item
    shift = (audio[0] + AUDIO / 2) - (video[0] + VIDEO / 2)  # audio centre − video centre
    if negative == "none":  # aligned, as far as an item shorter than the audio window allows
        if items[video_window.item].duration_s >= AUDIO:
            assert shift == pytest.approx(0.0, abs=1e-9)
        else:
            assert audio[0] == 0.0 and video[1] <= items[video_window.item].duration_s + TOL
    elif negative == "hard":
        assert overlap_gap(video, audio) >= min_gap - TOL
    else:
        assert overlap_gap(video, audio) < 0 and min_shift - TOL <= abs(shift) < AUDIO


def test_sync_pairs_follow_the_curriculum_with_exact_counts():
    items = sync_items()
    sampler = SyncPairSampler(items, CLIP, 8, seed=0, switch_epoch=2, superhard_fraction=0.25)
    assert sampler.counts(1) == {"positive": 4, "easy": 4, "hard": 0, "superhard": 0}
    assert sampler.counts(2) == {"positive": 4, "easy": 2, "hard": 1, "superhard": 1}
    for epoch in range(4):
        sampler.set_epoch(epoch)
        for batch in sampler:
            kinds = Counter(spec.kind for spec in batch)
            assert sum(spec.labels["sync"] for spec in batch) == 4  # positives : negatives = 1 : 1
            assert kinds == Counter({k: n for k, n in sampler.counts(epoch).items() if n})
            for spec in batch:
                check_pair(spec, items)
                assert_inside(spec, items)
    never = SyncPairSampler(items, CLIP, 8, seed=0)  # switch_epoch None: easy negatives forever
    never.set_epoch(50)
    assert {s.kind for b in never for s in b} == {"positive", "easy"}


def test_sync_hard_fraction_and_positive_ratio_are_options():
    items = sync_items()
    sampler = SyncPairSampler(items, CLIP, 10, seed=1, switch_epoch=0, hard_fraction=0.5, positive_fraction=0.2,
                              min_gap_s=1.5)
    for batch in sampler:
        assert Counter(s.kind for s in batch) == Counter({"positive": 2, "easy": 4, "hard": 4})
        for spec in batch:
            check_pair(spec, items, min_gap=1.5)


def test_sync_items_too_short_for_hard_negatives_get_easy_ones():
    items = sync_items(20, duration=1.0)[:10] + sync_items(10, duration=20.0)  # 1-5 s (hard needs 3 s) and 20+ s
    sampler = SyncPairSampler(items, CLIP, 6, seed=2, switch_epoch=0, hard_fraction=1.0, clips_per_item=4)
    kinds = Counter()
    for batch in sampler:
        for spec in batch:
            check_pair(spec, items)
            if spec.labels["negative"] == "hard":
                assert items[spec.windows[0].item].duration_s >= 3.0
            if items[spec.windows[0].item].duration_s < 3.0 and spec.labels["sync"] == 0:
                assert spec.labels["negative"] == "easy"
            kinds[spec.kind] += 1
    assert kinds["hard"] and kinds["easy"] and kinds["positive"] == sum(kinds.values()) // 2
    short = sampler.replacement(next(s for b in sampler for s in b if s.kind == "hard"), 3)
    assert short.kind == "hard" and items[short.windows[0].item].duration_s >= 3.0


# ------------------------------------------------------------------------------------------------ temporal


def test_temporal_speeds_only_where_the_item_is_long_enough():
    # one window spans 2 s at 1×, 4 s at 2×, 8 s at 4×, 16 s at 8×
    items = [item(0, 1.0), item(1, 5.0), item(2, 9.0), item(3, 40.0)] * 3
    sampler = TemporalSampler(items, CLIP, 4, seed=0, clips_per_item=20)
    classes = {0: set(), 1: set(), 2: set(), 3: set()}
    reversed_ = 0
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            for spec in batch:
                main = spec.windows[0]
                assert main.speed == sampler.speeds[spec.labels["speed_class"]]
                assert main.reverse == bool(spec.labels["reverse"])
                reversed_ += spec.labels["reverse"]
                classes[main.item % 4].add(spec.labels["speed_class"])
                assert_inside(spec, items)
    assert classes == {0: {0}, 1: {0, 1}, 2: {0, 1, 2}, 3: {0, 1, 2, 3}}
    total = 3 * len(sampler) * 4
    assert 0.4 * total < reversed_ < 0.6 * total


def test_temporal_order_labels_match_the_window_times():
    items = [item(i, [3.0, 4.5, 7.0, 30.0][i % 4]) for i in range(16)]
    sampler = TemporalSampler(items, CLIP, 4, seed=1, clips_per_item=10, min_gap_s=0.25)
    labels = Counter()
    for batch in sampler:
        for spec in batch:
            main, second, cross = spec.windows
            duration = items[main.item].duration_s
            assert second.item == cross.item == main.item
            if spec.labels["order"] == -1:  # main + second clip + gap do not fit
                assert second.video_start is None and second.audio_start is None
                assert duration < ClipGeometry.of(CLIP).extent(main.speed) + 2.0 + 0.25
            else:
                assert second.speed == 1 and not second.reverse
                a, b = span_of(main, CLIP), span_of(second, CLIP)
                assert overlap_gap(a, b) >= 0.25 - TOL
                assert spec.labels["order"] == int(b[0] > a[0])
            if spec.labels["av_order"] == -1:
                assert duration < VIDEO + AUDIO + 0.25 and cross.video_start is None
            else:
                video = (cross.video_start, cross.video_start + VIDEO)
                audio = (cross.audio_start, cross.audio_start + AUDIO)
                assert overlap_gap(video, audio) >= 0.25 - TOL
                assert spec.labels["av_order"] == int(audio[0] > video[0])
            labels[("order", spec.labels["order"])] += 1
            labels[("av", spec.labels["av_order"])] += 1
    assert all(labels[k] > 5 for k in [("order", 0), ("order", 1), ("order", -1), ("av", 0), ("av", 1)])


def test_temporal_parts_can_be_switched_off():
    items = [item(i, 30.0) for i in range(8)]
    sampler = TemporalSampler(items, CLIP, 4, seed=0, ordering=False, av_ordering=False, speeds=(1, 2),
                              reverse_prob=0.0)
    for batch in sampler:
        for spec in batch:
            assert spec.labels["order"] == spec.labels["av_order"] == -1 and spec.labels["reverse"] == 0
            assert spec.labels["speed_class"] in (0, 1)
            assert all(w.video_start is None and w.audio_start is None for w in spec.windows[1:])


def test_avid_offsync_places_the_video_over_the_widened_audio_window():
    """offsync: avid (AVID-CMA datasets/video_db.py _sample_snippet): with 2 s of audio, 0.5 s of video and 0.5 s
    of jitter, the video starts anywhere from 0.5 s before the audio to 2.0 s after its start (a 2.5 s range);
    centred keeps it within ±0.5 s of the audio window's middle (0.75 s after its start)."""
    import numpy as np

    from avcli.data.samplers import ClipGeometry, random_window

    rng = np.random.default_rng(0)
    for mode, (low, high) in (("avid", (-0.5, 2.0)), ("centred", (0.25, 1.25))):
        geometry = ClipGeometry(8, 16.0, 2.0, 0.5, mode)
        offsets = np.array([p.video_start - p.audio_start for p in
                            (random_window(60.0, geometry, rng) for _ in range(4000))])
        assert offsets.min() >= low - 1e-9 and offsets.max() <= high + 1e-9
        assert offsets.min() < low + 0.05 and offsets.max() > high - 0.05  # the whole range is used
        assert abs(offsets.mean() - 0.75) < 0.05  # uniform around the middle either way
