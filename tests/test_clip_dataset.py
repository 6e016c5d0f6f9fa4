"""The clip dataset: SampleSpec windows → tensors (slots, speed, reversal), bad clips replaced and counted, and the
training loop running every sampler layout it supports."""

from __future__ import annotations

import json

import pytest
import torch

from avcli.data.catalog import CatalogItem
from avcli.data.clip_dataset import ClipDataset, DataError, collate_samples
from avcli.data.sample_spec import SampleSpec, Window
from avcli.recipe import load_recipe
from avcli.recipe.schema import Augment, Clip
from avcli.train.loop import pretrain

from conftest import tiny_recipe_dict
from media_helpers import first_onset, frame_index, write_counter_video

CLIP = Clip(frames=4, fps=25, size=32, resize=32, audio_seconds=0.4, sample_rate=16000)


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    path = write_counter_video(tmp_path_factory.mktemp("m") / "c.mp4", frames=50, size=(48, 32), clicks_s=(0.5,))
    return CatalogItem(item_id="c", path=str(path), status="ok", duration_s=2.0, fps=25.0)


def _eval_dataset(items):
    return ClipDataset(items, CLIP, Augment(), train=False)


def _indices(video_slot: torch.Tensor) -> list[int]:
    """Grey-level frame numbers of an eval (uint8 C×T×H×W) clip."""
    return [frame_index(video_slot[:, t].permute(1, 2, 0).numpy()) for t in range(video_slot.shape[1])]


def test_speed_and_reverse_windows(counter):
    spec = SampleSpec(
        (Window(0, 0.4, 0.3), Window(0, 0.4, None, speed=2), Window(0, 0.4, None, reverse=True)), seed=1
    )
    sample = _eval_dataset([counter])[spec]
    assert sample["video"].shape == (3, 3, 4, 32, 32) and sample["audio"].shape == (1, 6400)
    assert _indices(sample["video"][0]) == [10, 11, 12, 13]
    assert _indices(sample["video"][1]) == [10, 12, 14, 16]  # 2× by frame skipping
    assert _indices(sample["video"][2]) == [13, 12, 11, 10]
    assert first_onset(sample["audio"][0].numpy(), 16000) == pytest.approx(0.2, abs=0.002)  # click at 0.5 s


def test_audio_speed_and_reversal_move_the_click(counter):
    spec = SampleSpec((Window(0, None, 0.3, speed=2), Window(0, None, 0.3, reverse=True)), seed=0)
    sample = _eval_dataset([counter])[spec]
    assert "video" not in sample and sample["audio"].shape == (2, 6400)
    assert first_onset(sample["audio"][0].numpy(), 16000) == pytest.approx(0.1, abs=0.002)  # 0.2 s played 2× fast
    # reversed: the 5 ms click that starts 0.2 s into the window ends 0.2 s before its end
    assert first_onset(sample["audio"][1].numpy(), 16000) == pytest.approx(0.4 - 0.2 - 0.005, abs=0.002)


def test_audio_speed_by_tempo_moves_the_click_like_resampling(counter):
    spec = SampleSpec((Window(0, None, 0.3, speed=2),), seed=0)
    audio = ClipDataset([counter], CLIP, Augment(), train=False, audio_speed="tempo")[spec]["audio"][0].numpy()
    # the phase vocoder spreads the 5 ms click over its 32 ms window: found at half its (lower) peak
    assert first_onset(audio, 16000, threshold=0.5 * abs(audio).max()) == pytest.approx(0.1, abs=0.01)


def test_slots_keep_their_place_when_a_window_is_empty(counter):
    # sync pair: window 0 video only, window 1 audio only; temporal: an unplaceable part is an empty window
    pair = _eval_dataset([counter])[SampleSpec((Window(0, 0.4, None), Window(0, None, 1.0)), seed=0)]
    assert pair["video"].shape[0] == 1 and pair["audio"].shape[0] == 1
    temporal = _eval_dataset([counter])[SampleSpec((Window(0, 0.4, 0.3), Window(0, None, None)), seed=0)]
    assert temporal["video_mask"].tolist() == [True, False] and temporal["audio_mask"].tolist() == [True, False]
    assert temporal["video"][1].abs().sum() == 0 and temporal["audio"][1].abs().sum() == 0


def test_a_broken_clip_is_replaced_counted_and_bounded(counter, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 2000)
    items = [counter, CatalogItem(item_id="b", path=str(broken), status="ok", duration_s=2.0)]
    to_good = lambda spec, attempt: SampleSpec((Window(0, 0.4, 0.3),), seed=spec.seed + attempt)  # noqa: E731
    dataset = ClipDataset(items, CLIP, Augment(), train=True, replacement=to_good, max_consecutive_failures=3)
    sample = dataset[SampleSpec((Window(1, 0.4, 0.3),), seed=5)]
    assert sample["skipped"] == 1 and sample["items"].tolist() == [0]
    to_bad = lambda spec, attempt: SampleSpec((Window(1, 0.4, 0.3),), seed=attempt)  # noqa: E731
    dataset = ClipDataset(items, CLIP, Augment(), train=True, replacement=to_bad, max_consecutive_failures=3)
    with pytest.raises(DataError, match="3 clip"):
        dataset[SampleSpec((Window(1, 0.4, 0.3),), seed=5)]


def test_on_device_augmentation_collates_raw_clips_of_different_sizes(counter, tmp_path):
    wide = write_counter_video(tmp_path / "wide.mp4", frames=50, size=(64, 32))
    items = [counter, CatalogItem(item_id="w", path=str(wide), status="ok", duration_s=2.0)]
    clip = Clip(frames=4, fps=25, size=24, resize=32, audio_seconds=0.4, sample_rate=16000)
    dataset = ClipDataset(items, clip, Augment(on_device=True, time_masks=1, time_mask_width=3), train=True)
    batch = collate_samples([dataset[SampleSpec((Window(i, 0.4, 0.3),), seed=i)] for i in (0, 1)])
    assert batch["video_raw"].shape == (2, 4, 32, 64, 3) and batch["video_windows"] == 1
    assert batch["video_params"]["crop"].shape[0] == 2 and batch["spec_masks"]["time"].shape[:2] == (2, 1)


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.sampler.kind=hierarchical", "data.sampler.clips_per_title=2"],
        ["data.augment.on_device=true", "data.augment.time_masks=2", "data.augment.freq_masks=1"],
    ],
)
def test_pretrain_with_hierarchical_batches_and_device_augmentation(small_world, tmp_path, write_recipe, overrides):
    path = write_recipe(tiny_recipe_dict(small_world, tmp_path / "run"))
    summary = pretrain(load_recipe(path, overrides))
    assert summary["steps"] == 6 and torch.isfinite(torch.tensor(summary["final_loss"]))


def test_broken_file_during_training_is_skipped_and_reported(tmp_path, write_recipe):
    from avcli.data.catalog import Catalog
    from avcli.data.ingest import ingest_synthetic
    from avcli.recipe.schema import SyntheticWorld

    world = tmp_path / "world"  # its own world: the file broken below must not be the shared fixture's
    ingest_synthetic(SyntheticWorld(videos=12, titles=3, seed=5, min_seconds=3.0, max_seconds=4.0), world)

    with Catalog(world) as catalog:
        victim = catalog.items()[0]
    open(victim.source, "r+b").truncate(300)  # broken after ingest (disk trouble, partial copy)
    recipe = tiny_recipe_dict(world, tmp_path / "run", steps=12)
    summary = pretrain(load_recipe(write_recipe(recipe)))
    assert summary["steps"] == 12
    skipped = sum(json.loads(line)["skipped_samples"] for line in open(tmp_path / "run" / "metrics.jsonl"))
    assert skipped >= 1


def test_xid_with_a_sync_sampler_is_a_recipe_error(small_world, tmp_path, write_recipe):
    from avcli.errors import RecipeError

    path = write_recipe(tiny_recipe_dict(small_world, tmp_path / "run"))
    with pytest.raises(RecipeError, match="data.sampler.kind"):
        load_recipe(path, ["data.sampler.kind=sync_pairs"])


def test_avts_trains_on_sync_pairs_and_reports_sync_accuracy(small_world, tmp_path, write_recipe):
    recipe = tiny_recipe_dict(small_world, tmp_path / "run", steps=6)
    recipe["method"] = {"kind": "avts", "margin": 0.99}
    recipe["data"]["sampler"] = {"kind": "sync_pairs", "switch_epoch": 0, "hard_fraction": 0.5, "min_gap_s": 0.2}
    summary = pretrain(load_recipe(write_recipe(recipe)))
    assert summary["steps"] == 6 and torch.isfinite(torch.tensor(summary["final_loss"]))
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert all(0.0 <= r["sync_accuracy"] <= 1.0 for r in records)
    assert any("sync_accuracy_hard" in r for r in records)  # hard negatives from epoch 0
