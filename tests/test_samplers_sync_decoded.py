"""AVTS pairs end to end: what the sync-pair sampler labels is what the clip dataset decodes.

The synthetic world can be rendered again (same seed, same frames and samples), so a decoded pair can be checked
against its label: the decoded audio is its item's soundtrack at audio_start and the decoded video its item's
frames at video_start; a positive's video sits at the centre of its own audio window; a hard negative is the
same item with the audio ≥ min_gap_s clear of the video; an easy negative is another item; and the collated
`sync` flags come in the order of the samples.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from avcli.data.catalog import Catalog
from avcli.data.clip_dataset import ClipDataset, collate_samples
from avcli.data.samplers import SyncPairSampler
from avcli.media.synthetic import _Title, render_video, world_assignments
from avcli.recipe.schema import Augment, Clip, SyntheticWorld

CLIP = Clip(frames=4, fps=8, size=32, resize=36, audio_seconds=1.0, sample_rate=16000)
MIN_GAP = 0.2


def _clean_items(root: Path):
    faulty = {row["path"] for row in csv.DictReader(open(root / "labels.csv")) if row["faulty"] == "1"}
    with Catalog(root) as catalog:
        return [item for item in catalog.items(status="ok") if f"media/{Path(item.path).name}" not in faulty]


def _rendered(root: Path, items):
    """Item index → the world's own (frames, audio) as rendered before encoding, made on first use."""
    world = json.loads((root / "world.json").read_text())
    spec = SyntheticWorld(**world["spec"])
    rows = {row["video_id"]: row for row in world_assignments(spec)}
    cache = {}

    def get(index: int):
        if index not in cache:
            video_id = Path(items[index].path).stem
            row = rows[video_id]
            frames, audio, _ = render_video(spec, int(video_id[1:]), row["class_id"], _Title(spec, row["title_id"]), None)
            cache[index] = frames, audio
        return cache[index]

    return spec, get


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12))


def test_decoded_sync_pairs_match_their_labels(small_world):
    items = _clean_items(small_world)
    _, rendered = _rendered(small_world, items)
    sampler = SyncPairSampler(items, CLIP, 8, seed=0, switch_epoch=0, hard_fraction=0.5, min_gap_s=MIN_GAP)
    dataset = ClipDataset(items, CLIP, Augment(), train=False)
    video_s, audio_s = CLIP.frames / CLIP.fps, CLIP.audio_seconds
    kinds_seen, checked = set(), 0
    for index in range(2):
        specs = sampler.batch(0, index)
        samples = [dataset[spec] for spec in specs]
        batch = collate_samples(samples)
        # the flags reach the loss in sample order
        assert batch["labels"]["sync"].tolist() == [int(spec.kind == "positive") for spec in specs]
        assert batch["labels"]["negative"] == [spec.labels["negative"] for spec in specs]
        for spec, sample in zip(specs, samples):
            kinds_seen.add(spec.kind)
            video, audio = spec.windows
            assert sample["items"].tolist() == [video.item, audio.item]
            v0, a0 = video.video_start, audio.audio_start
            if spec.kind == "positive":
                assert audio.item == video.item and abs((v0 - a0) - (audio_s - video_s) / 2) < 1e-9
            elif spec.kind == "hard":
                assert audio.item == video.item
                gap = max(a0 - (v0 + video_s), v0 - (a0 + audio_s))
                assert gap >= MIN_GAP - 1e-9
            else:
                assert spec.kind == "easy" and audio.item != video.item
            # the decoded audio is the item's own soundtrack at audio_start, not 50 ms off
            _, audio_track = rendered(audio.item)
            n, first = sample["audio"].shape[1], int(round(a0 * CLIP.sample_rate))
            decoded = sample["audio"][0].numpy()
            aligned = _correlation(decoded, audio_track[first:first + n])
            assert aligned > 0.95
            shift = CLIP.sample_rate // 20
            later = audio_track[first + shift:first + shift + n]
            if len(later) == n:
                assert _correlation(decoded, later) < aligned - 0.1  # tones repeat, envelopes do not
            checked += 1
    assert kinds_seen == {"positive", "easy", "hard"}
    assert checked == 16


def test_decoded_sync_video_frames_are_the_rendered_frames_at_the_window(small_world):
    """The video of a pair is the world's own frames at video_start + k/fps (so positives are in sync)."""
    items = _clean_items(small_world)
    spec_world, rendered = _rendered(small_world, items)
    sampler = SyncPairSampler(items, CLIP, 8, seed=1, switch_epoch=None)
    clip = Clip(frames=4, fps=8, size=64, resize=64, audio_seconds=1.0, sample_rate=16000)  # no resize, full frame
    dataset = ClipDataset(items, clip, Augment(), train=False)
    positives = [spec for spec in sampler.batch(0, 0) if spec.kind == "positive"][:2]
    for spec in positives:
        window = spec.windows[0]
        frames, _ = rendered(window.item)
        decoded = dataset[spec]["video"][0]  # 3×T×H×W uint8
        picks = np.floor((window.video_start + np.arange(clip.frames) / clip.fps) * spec_world.fps + 1e-6).astype(int)
        expected = torch.from_numpy(frames[picks]).permute(3, 0, 1, 2).float()
        error = (decoded.float() - expected).abs().mean(dim=(0, 2, 3))  # per frame
        assert bool((error < 6).all()), error  # lossless H.264 of yuv420p: only chroma rounding differs
        if len(picks) > 1:  # and the neighbouring frame is clearly another picture (the check has teeth)
            shifted = torch.from_numpy(frames[np.clip(picks + 2, 0, len(frames) - 1)]).permute(3, 0, 1, 2).float()
            assert float((decoded.float() - shifted).abs().mean()) > float(error.mean())
