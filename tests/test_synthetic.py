"""The synthetic world: deterministic, synchronised by construction, class not in colour."""

from __future__ import annotations

import csv
import json

import av
import numpy as np
import pytest

from avcli.media.clip_reader import ClipReader
from avcli.media.synthetic import bounce_sound, generate_world, world_assignments
from avcli.recipe.schema import SyntheticWorld


SPEC = SyntheticWorld(videos=8, titles=2, seed=11, min_seconds=2.0, max_seconds=3.0, faulty_fraction=0.25)


def _decode_all(path):
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    return frames, audio


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(SPEC, tmp_path_factory.mktemp("w"))


def test_same_seed_gives_the_same_videos(world, tmp_path):
    again = generate_world(SPEC, tmp_path / "again")
    for name in ("v00000.mp4", "v00005.mp4"):
        a, b = _decode_all(world / "media" / name), _decode_all(again / "media" / name)
        # the decoded frames and sound are the guarantee (lossless video); libx264's bytes may differ now and then
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert (world / "labels.csv").read_text() == (again / "labels.csv").read_text()


def test_another_seed_gives_other_videos(world, tmp_path):
    other = generate_world(SPEC.model_copy(update={"seed": 12}), tmp_path / "other")
    assert not np.array_equal(_decode_all(world / "media/v00000.mp4")[0][:5], _decode_all(other / "media/v00000.mp4")[0][:5])


def test_labels_csv_is_complete_and_balanced(world):
    rows = list(csv.DictReader(open(world / "labels.csv")))
    assert len(rows) == SPEC.videos
    assert sorted({int(r["class_id"]) for r in rows}) == list(range(SPEC.classes))
    assert sum(int(r["faulty"]) for r in rows) == round(SPEC.videos * SPEC.faulty_fraction)
    # the split is by title: no title has videos in both splits
    by_title = {}
    for r in rows:
        by_title.setdefault(r["title_id"], set()).add(r["split"])
    assert all(len(splits) == 1 for splits in by_title.values())
    assert {"train", "test"} == {s for splits in by_title.values() for s in splits}


def _onset_by_template(window: np.ndarray, class_id: int, sample_rate: int, f0: float) -> int:
    """Sample offset in `window` where the class's bounce sound at the video's fundamental best matches."""
    template = bounce_sound(class_id, sample_rate, f0)[: int(0.08 * sample_rate)]
    return int(np.correlate(window, template, mode="valid").argmax())


def test_every_bounce_sounds_at_its_frame(world):
    """Sync by construction: each bounce of a clean video starts its class's sound at the bounce frame's time
    (found in the decoded mp4 by matching the class's sound at the video's pitch, to within 2 ms)."""
    events = json.loads((world / "world.json").read_text())["videos"]
    rows = {r["path"]: r for r in csv.DictReader(open(world / "labels.csv"))}
    sr, checked = SPEC.sample_rate, 0
    for path, row in rows.items():
        if int(row["faulty"]):
            continue
        video = events[path.split("/")[-1][:-4]]
        bounces = video["bounce_frames"]
        with ClipReader(world / path) as reader:
            for i, k in enumerate(bounces):
                neighbours = [b for j, b in enumerate(bounces) if j != i and abs(b - k) / SPEC.fps < 0.2]
                if neighbours:
                    continue  # overlapping sounds: the match would be ambiguous
                t = k / SPEC.fps
                window = reader.read_audio(t - 0.03, 0.2, sr).numpy()
                onset = t - 0.03 + _onset_by_template(window, int(row["class_id"]), sr, video["f0_hz"]) / sr
                assert onset == pytest.approx(t, abs=0.002), (path, k)  # a frame lasts 62.5 ms
                checked += 1
    assert checked >= 5


def test_faulty_videos_are_not_in_sync(world):
    events = json.loads((world / "world.json").read_text())["videos"]
    rows = [r for r in csv.DictReader(open(world / "labels.csv")) if int(r["faulty"])]
    assert rows
    misses = 0
    for row in rows:
        with ClipReader(world / row["path"]) as reader:
            for k in events[row["path"].split("/")[-1][:-4]]["bounce_frames"]:
                window = reader.read_audio(k / SPEC.fps, 0.01, SPEC.sample_rate).numpy()
                misses += np.abs(window).max() < 0.25
    assert misses > 0


def test_colour_is_drawn_independently_of_class():
    """Two videos of the same class differ in object colour; assignment never ties colour to class."""
    spec = SyntheticWorld(videos=16, titles=4, seed=5)
    rows = world_assignments(spec)
    same_class = [i for i, r in enumerate(rows) if r["class_id"] == 0]
    assert len(same_class) == 2
    from avcli.media.synthetic import _Title, render_video

    colours = []
    for i in same_class:
        frames, _, _ = render_video(spec, i, 0, _Title(spec, rows[i]["title_id"]), None)
        frame = frames[0].reshape(-1, 3).astype(int)
        values, counts = np.unique(frame, axis=0, return_counts=True)
        colours.append(values[counts.argmax()])  # the flat object colour is the most frequent exact value
    assert np.abs(colours[0] - colours[1]).sum() > 30


def _object_track(frames: np.ndarray) -> np.ndarray:
    """Centroid of the object in every frame: the flat object colour is the most frequent exact pixel value."""
    values, counts = np.unique(frames[0].reshape(-1, 3), axis=0, return_counts=True)
    colour = values[counts.argmax()]
    return np.stack([np.argwhere((f == colour).all(-1)).mean(0) for f in frames])


def _speed_early_and_late(spec: SyntheticWorld, index: int) -> tuple[float, float]:
    """Mean displacement per frame in the 3 frames after each bounce and in the 3 before the next one."""
    from avcli.media.synthetic import _Title, render_video

    row = world_assignments(spec)[index]
    frames, _, events = render_video(spec, index, row["class_id"], _Title(spec, row["title_id"]), None)
    step = np.linalg.norm(np.diff(_object_track(frames), axis=0), axis=1)  # step[k]: frame k → k+1
    early, late = [], []
    bounces = events["bounce_frames"]
    for b, nxt in zip(bounces, bounces[1:]):
        if nxt - b >= 10:
            early += list(step[b + 1 : b + 4])
            late += list(step[nxt - 4 : nxt - 1])
    assert early, "no bounce interval long enough in this video"
    return float(np.mean(early)), float(np.mean(late))


def test_slowdown_gives_the_motion_an_arrow_of_time():
    """By default the object keeps its speed between bounces (motion looks the same backwards); with a slowdown
    it is slower just before a bounce than just after one, by about exp(-rate · gap)."""
    base = dict(videos=8, titles=2, seed=3, distractors=0, min_seconds=8.0, max_seconds=8.0, faulty_fraction=0.0)
    early, late = _speed_early_and_late(SyntheticWorld(**base), 1)
    assert late == pytest.approx(early, rel=0.1)
    early, late = _speed_early_and_late(SyntheticWorld(**base, slowdown_per_s=1.0), 1)
    assert late < 0.75 * early


def test_slowdown_restores_the_speed_at_each_bounce():
    from avcli.media.synthetic import _Mover

    mover = _Mover(np.array([32.0, 32.0]), np.array([3.0, 0.0]), radius=5.0, decay=0.9)
    speeds, bounced = [], []
    for _ in range(30):
        bounced.append(mover.step(64))
        speeds.append(float(np.linalg.norm(mover.vel)))
    first = bounced.index(True)
    assert speeds[0] == pytest.approx(2.7) and speeds[1] == pytest.approx(2.43)
    assert speeds[first] == pytest.approx(3.0) and speeds[first + 1] == pytest.approx(2.7)


def _fall_video(index: int = 1, **overrides):
    from avcli.media.synthetic import _Title, render_video

    spec = SyntheticWorld(videos=8, titles=2, seed=3, distractors=0, sound_distractors=0.0,
                          min_seconds=8.0, max_seconds=8.0, faulty_fraction=0.0, motion="fall", **overrides)
    row = world_assignments(spec)[index]
    return spec, render_video(spec, index, row["class_id"], _Title(spec, row["title_id"]), None)


def _falls(events: dict, n_frames: int) -> list[list[int]]:
    """The indices (into bounce_frames) of the bounces of each fall: between one kick and the next."""
    edges = [0, *events["kick_frames"], n_frames]
    return [[i for i, b in enumerate(events["bounce_frames"]) if lo <= b < hi] for lo, hi in zip(edges, edges[1:])]


def test_fall_world_loses_height_between_kicks():
    """`motion: fall`: between two kicks every bounce peaks lower than the one before (restitution < 1), and a kick
    sends the object up again; the bounces of a fall come closer together."""
    spec, (frames, _, events) = _fall_video()
    height = frames.shape[1] - _object_track(frames)[:, 0]  # rows grow downwards
    bounces, checked = events["bounce_frames"], 0
    for fall in _falls(events, len(frames)):
        peaks = [height[bounces[i]:bounces[i + 1]].max() for i in fall[:-1] if i + 1 in fall]
        gaps = np.diff([bounces[i] for i in fall])
        assert all(b < a for a, b in zip(peaks, peaks[1:])), peaks
        assert all(b <= a for a, b in zip(gaps, gaps[1:])), gaps
        checked += len(peaks) >= 2
    assert checked >= 1
    assert len(events["kick_frames"]) >= 3  # about one kick every 1.5–2.5 s over 8 s
    kick = events["kick_frames"][1]
    assert height[kick + 4] > height[kick] + 5  # a kick lifts it


def test_fall_world_bounce_sounds_get_quieter_within_a_fall():
    """Each bounce of a fall sounds quieter than the one before (the gain follows the impact speed), in the gains
    the generator reports and in the rendered soundtrack; the sound events per second stay near the bounce
    world's (about one a second)."""
    spec, (frames, audio, events) = _fall_video()
    rate = spec.sample_rate
    loudness = [np.abs(audio[round(b / spec.fps * rate):round(b / spec.fps * rate) + rate // 40]).max()
                for b in events["bounce_frames"]]
    for fall in _falls(events, len(frames)):
        gains = [events["bounce_gains"][i] for i in fall]
        assert all(b < a for a, b in zip(gains, gains[1:])), gains
        heard = [loudness[i] for i in fall]
        assert all(b < a for a, b in zip(heard, heard[1:])), heard
    per_second = len(events["bounce_frames"]) / (len(frames) / spec.fps)
    assert 0.6 <= per_second <= 2.0


def test_fall_world_excludes_the_slowdown():
    with pytest.raises(ValueError, match="slowdown_per_s"):
        SyntheticWorld(motion="fall", slowdown_per_s=1.0)


def test_tiring_kicks_lower_the_bounces_over_the_video():
    """`kick_decay` < 1: each kick reaches a smaller share of the frame than the one before, so the bounces of the
    video's second half are weaker (quieter) than those of its first half; with 1 they are alike."""
    halves = {}
    for decay in (1.0, 0.85):
        early, late = [], []
        for index in range(4):
            spec, (frames, _, events) = _fall_video(index, kick_decay=decay)
            gains, bounces = np.array(events["bounce_gains"]), np.array(events["bounce_frames"])
            early.append(gains[bounces < len(frames) // 2].mean())
            late.append(gains[bounces >= len(frames) // 2].mean())
        halves[decay] = np.mean(late) / np.mean(early)
    assert halves[0.85] < 0.8 * halves[1.0]


def test_impact_dust_widens_and_fades_after_each_impact():
    """`impact_dust_s`: an impact raises a ring of dust on the floor, centred on the impact, that is wider and
    fainter from frame to frame until it is gone `impact_dust_s` later (played backwards it would shrink and
    thicken: an arrow inside the clip). Without it the frames are exactly the plain fall world's."""
    _, (plain, _, events) = _fall_video()
    spec, (dusty, _, dusty_events) = _fall_video(impact_dust_s=0.5)
    assert dusty_events["bounce_frames"] == events["bounce_frames"]  # the dust changes no motion
    life = round(0.5 * spec.fps)
    bounces = [-life, *events["bounce_frames"], len(plain) + life]
    assert np.array_equal(dusty[: bounces[1]], plain[: bounces[1]])
    # an impact whose dust is alone on the floor: the last one's has settled, the next comes after it settles
    first = next(b for a, b, c in zip(bounces, bounces[1:], bounces[2:]) if b - a >= life and c - b > life)
    widths, strengths = [], []
    for k in range(first + 1, first + life):
        changed = np.abs(dusty[k].astype(int) - plain[k].astype(int)).sum(axis=2)  # the object hides dust
        columns = np.flatnonzero(changed.max(axis=0) > 6)
        widths.append(columns[-1] - columns[0])
        strengths.append(changed.max())
    assert all(b >= a for a, b in zip(widths, widths[1:])) and widths[-1] > 2 * widths[0], widths
    assert all(b <= a for a, b in zip(strengths, strengths[1:])) and strengths[-1] < strengths[0] / 2, strengths
    assert np.array_equal(dusty[first + life], plain[first + life])  # gone once its time is up


def test_impact_dust_needs_the_fall_world():
    with pytest.raises(ValueError, match="impact_dust_s"):
        SyntheticWorld(motion="bounce", impact_dust_s=0.5)
