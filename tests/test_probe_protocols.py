"""The probe protocols end to end on miniature benchmark trees (tiny encoders, few clips): the AVID audio SVM
on ESC-50's five folds, linear / kNN / fine-tuning on UCF101 with Clip@1 and Video@1, the feature cache, the
results file, and the clip sampling they rest on."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from avcli.cli import run
from avcli.evaluate import probe as probe_module
from avcli.evaluate.clip_features import VideoClips
from avcli.evaluate.clip_sampling import ClipPlan, standard_sampling
from avcli.recipe.schema import Clip
from avcli.tasks.base import TaskVideo

from conftest import tiny_recipe_dict
from media_helpers import write_tone_audio
from task_trees import build_esc50, build_ucf101, needs_splits


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVCLI_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def tiny_recipe(tmp_path, write_recipe):
    return write_recipe(tiny_recipe_dict(tmp_path / "unused", tmp_path / "run"))


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ clip sampling


def test_standard_sampling_counts_and_random_starts_that_depend_only_on_the_file():
    video = standard_sampling(audio_task=False)
    assert (video.train.kind, video.train.count) == ("random", 10)
    assert [(m, p.kind, p.count) for m, p in video.tests] == [("video_top1", "even", 10), ("clip_top1", "random", 25)]
    audio = standard_sampling(audio_task=True)
    assert [(m, p.kind, p.count) for m, p in audio.tests] == [("top1", "even", 10)] and audio.audio_seconds == 2.0
    plan = ClipPlan("random", 25)
    starts = plan.starts(10.0, 2.0, "a.mp4")
    assert len(starts) == 25 and all(0 <= t <= 8.0 for t in starts) and len(set(starts)) == 25
    assert starts == plan.starts(10.0, 2.0, "a.mp4") != plan.starts(10.0, 2.0, "b.mp4")
    assert ClipPlan("even", 10).starts(12.0, 2.0, "x") == pytest.approx([0.5 + k for k in range(10)])


def test_audio_windows_pad_a_short_recording_and_read_sound_files_without_video(tmp_path):
    short = write_tone_audio(tmp_path / "short.flac", 1000.0, seconds=0.3)
    long = write_tone_audio(tmp_path / "long.wav", 500.0, seconds=3.0)
    clip = Clip(frames=4, fps=8, size=32, audio_seconds=1.0, sample_rate=16000)
    videos = [TaskVideo(str(short), 0, "test"), TaskVideo(str(long), 1, "test")]
    dataset = VideoClips(videos, clip, ClipPlan("even", 3), want_video=True, want_audio=True, audio_task=True,
                         audio_seconds=1.0, padding="tile")
    tiled = dataset[0]["audio"]
    assert tiled.shape == (1, 16000) and "video" not in dataset[0]  # one window: the recording is shorter
    period = 4800  # 0.3 s at 16 kHz: the recording repeats to fill the 1 s window
    assert torch.allclose(tiled[0, :period], tiled[0, period : 2 * period])
    first = VideoClips(videos, clip, ClipPlan("even", 3), False, True, audio_task=True, audio_seconds=1.0)[0]
    assert first["audio"].shape == (1, 16000)  # the default: the tone at the window's start, zeros after it
    assert first["audio"][0, period:].abs().max() == 0 and torch.equal(first["audio"][0, :period], tiled[0, :period])
    centred = VideoClips(videos, clip, ClipPlan("even", 3), False, True, audio_task=True, audio_seconds=1.0,
                         padding="centre")[0]
    assert centred["audio"][0, :5600].abs().max() == 0 and centred["audio"][0, 10400:].abs().max() == 0
    assert torch.equal(centred["audio"][0, 5600:10400], tiled[0, :period])
    windows = dataset[1]["audio"]
    # evenly spaced 1 s windows of 3 s start at 1/3, 1 and 5/3 s: a 500 Hz tone, so offsets show as phase
    offsets = [round(t * 16000) for t in ClipPlan("even", 3).starts(3.0, 1.0, "")]
    full = torch.sin(2 * torch.pi * 500 * torch.arange(48000) / 16000) * 0.5
    for k, offset in enumerate(offsets):
        assert torch.allclose(windows[k], full[offset : offset + 16000], atol=2e-3)


# ------------------------------------------------------------------------------------------------ ESC-50 / SVM


@needs_splits
def test_esc50_svm_every_layer_every_fold_and_the_mean(tmp_path, tiny_recipe, capsys):
    rows = build_esc50(tmp_path / "esc50", seconds=0.6)
    args = ["probe", "--task", "esc50", "--data-root", str(tmp_path / "esc50"), "--checkpoint", "random",
            "--recipe", str(tiny_recipe), "--protocol", "svm", "--splits", "all", "--train-clips", "2",
            "--test-clips", "2", "--audio-seconds", "0.5", "--results-dir", str(tmp_path / "results")]
    assert run(args) == 0
    records = _json_lines(capsys.readouterr().out)
    folds, summary = records[:5], records[5]
    assert [r["split"] for r in folds] == ["1", "2", "3", "4", "5"] and summary["split"] == "mean"
    for record in folds:
        assert record["protocol"] == "svm" and record["modality"] == "audio" and record["c"] == 10.0
        assert (record["n_train"], record["n_test"]) == (12, 3) and set(record["layers"]) == {
            "conv2x", "conv3x", "conv4x", "conv5x"}
        assert record["best_layer"] == max(record["layers"], key=record["layers"].get)
        assert record["top1"] == record["layers"][record["best_layer"]] == 100.0  # one tone per class: separable
    assert summary["top1"] == round(statistics.fmean(r["top1"] for r in folds), 2) and summary["top1_std"] == 0.0
    assert _json_lines((tmp_path / "results" / "results.jsonl").read_text()) == records
    assert len(rows) == 15


# ------------------------------------------------------------------------------------------------ UCF101


@pytest.fixture(scope="module")
def ucf_mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf101")
    build_ucf101(root, groups=(1, 8, 22))
    return root


@needs_splits
def test_ucf101_linear_knn_and_the_feature_cache(ucf_mini, tmp_path, tiny_recipe, capsys, monkeypatch):
    base = ["probe", "--task", "ucf101", "--data-root", str(ucf_mini), "--checkpoint", "random", "--recipe",
            str(tiny_recipe), "--train-clips", "2", "--test-clips", "3", "--random-test-clips", "4",
            "--cache-dir", str(tmp_path / "cache")]
    assert run(base) == 0
    linear = _json_lines(capsys.readouterr().out)
    assert [r["modality"] for r in linear] == ["video", "audio"]
    for record in linear:
        assert record["split"] == "1" and record["protocol"] == "linear" and (record["n_train"], record["n_test"]) == (6, 3)
        assert record["top1"] == record["video_top1"] and 0 <= record["clip_top1"] <= 100
        assert (record["train_clips"], record["test_clips_video_top1"], record["test_clips_clip_top1"]) == (
            "random2s0", "even3", "random4s1")
    assert linear[0]["video_top1"] == 100.0 and linear[1]["video_top1"] == 100.0  # colour / tone per class
    # the same probe again, and kNN on the same clips: features come from the cache, nothing is decoded
    calls = []
    real_extract = probe_module.extract_clip_features
    monkeypatch.setattr(probe_module, "extract_clip_features", lambda *a, **k: calls.append(a) or real_extract(*a, **k))
    assert run(base) == 0
    assert _json_lines(capsys.readouterr().out) == linear and calls == []
    assert run(base + ["--protocol", "knn", "--k", "3", "--temperature", "0.1", "--modality", "video"]) == 0
    (knn,) = _json_lines(capsys.readouterr().out)
    assert calls == [] and (knn["protocol"], knn["k"], knn["temperature"]) == ("knn", 3, 0.1)
    assert knn["video_top1"] == 100.0
    assert run(base + ["--no-cache", "--modality", "video"]) == 0
    assert len(calls) == 3  # train, Video@1 and Clip@1 clips extracted again
    assert _json_lines(capsys.readouterr().out)[0]["top1"] == linear[0]["top1"]


@needs_splits
def test_ucf101_finetune_short_schedule(ucf_mini, tmp_path, tiny_recipe, capsys):
    args = ["probe", "--task", "ucf101", "--data-root", str(ucf_mini), "--checkpoint", "random", "--recipe",
            str(tiny_recipe), "--protocol", "finetune", "--modality", "video", "--epochs", "2", "--warmup-epochs", "1",
            "--milestones", "1", "--batch-size", "4", "--test-clips", "2", "--random-test-clips", "2",
            "--splits", "2", "--no-cache", "--finetune-clips", "2"]
    assert run(args) == 0
    captured = capsys.readouterr()
    (record,) = _json_lines(captured.out)
    assert (record["protocol"], record["split"], record["epochs"], record["warmup_epochs"]) == ("finetune", "2", 2, 1)
    # 2 clips of every video per epoch (given; the task's default is AVID-CMA's 10, below), batch-norm statistics
    # updated in the classifier warm-up (AVID's warmup_classifier)
    assert (record["clips_per_video"], record["batch_size"], record["warmup_bn"]) == (2, 4, "update")
    from avcli.tasks import load_task

    ucf = load_task("ucf101", ucf_mini).schedule  # AVID-CMA configs/benchmark/ucf/8at16-fold*.yaml
    assert (ucf.epochs, ucf.milestones, ucf.clips_per_video, ucf.batch_size, ucf.min_area, ucf.color_jitter) == (
        16, (6, 10, 14), 10, 64, 0.08, (0.4, 0.4, 0.4, 0.2))
    assert (record["n_train"], record["n_test"]) == (6, 3) and 0 <= record["clip_top1"] <= 100
    epochs = [line for line in captured.err.splitlines() if "fine-tune video epoch" in line]
    assert len(epochs) == 3 and "(classifier only)" in epochs[0] and "(classifier only)" not in epochs[1]
    assert "lr 0.0001" in epochs[1] and "lr 3e-05" in epochs[2]  # ×0.3 from full epoch 1 on


@needs_splits
@pytest.mark.parametrize("warmup_bn, trains", [("update", True), ("freeze", False)])
def test_finetune_epochs_draw_the_tasks_clips_and_warm_up_as_avid(ucf_mini, tiny_recipe, monkeypatch, warmup_bn,
                                                                   trains):
    """An epoch holds clips_per_video random clips of every train video, each a random resized crop of the clip
    size; during the classifier warm-up the encoder runs in training mode (its batch-norm statistics follow the
    task: AVID-CMA's warmup_classifier with model.train(True)) unless warmup_bn is freeze."""
    from dataclasses import replace

    from avcli.evaluate import finetune as finetune_module
    from avcli.evaluate.encoders import load_eval_encoders
    from avcli.tasks import load_task

    task = load_task("ucf101", ucf_mini).select("1")
    schedule = replace(task.schedule, epochs=0, warmup_epochs=1, clips_per_video=3, batch_size=4)
    sampling = standard_sampling(False, 1, 1, 1)
    train = task.split("train")
    clips = finetune_module.epoch_clips(train, Clip(frames=4, fps=8, size=32), schedule, 7, "video", False, sampling)
    assert len(clips) == 3 * len(train)
    first = clips[0]["video"]
    assert first.shape == (1, 3, 4, 32, 32) and first.dtype == torch.uint8
    assert not torch.equal(clips[0]["video"], clips[len(train)]["video"])  # the same video, another random clip

    encoders = load_eval_encoders("random", tiny_recipe)
    modes = []
    monkeypatch.setattr(finetune_module, "extract_clip_features", lambda *a, **k: {"video": torch.zeros(
        len(task.split("test")), 1, encoders.model.video.out_dim)})
    encoders.model.video.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    options = finetune_module.FinetuneOptions(schedule, warmup_bn=warmup_bn)
    finetune_module.finetune(encoders, task, "video", sampling, options, torch.device("cpu"))
    assert modes and set(modes) == {trains}


@needs_splits
def test_linear_multilayer_trains_a_classifier_per_stage_and_marks_the_best(ucf_mini, tiny_recipe, capsys):
    """AVID-CMA's linear protocol (configs/benchmark/kinetics/8x224x224-linear.yaml): BatchNorm + linear on each of
    conv2x–conv5x max-pooled to 12², 8², 6², 4²; every layer's Clip@1 / Video@1, the best layer's as the result."""
    args = ["probe", "--task", "ucf101", "--data-root", str(ucf_mini), "--checkpoint", "random", "--recipe",
            str(tiny_recipe), "--protocol", "linear-multilayer", "--modality", "video", "--epochs", "2",
            "--batch-size", "4", "--test-clips", "2", "--random-test-clips", "2", "--no-cache"]
    assert run(args) == 0
    captured = capsys.readouterr()
    (record,) = _json_lines(captured.out)
    assert record["protocol"] == "linear-multilayer" and (record["epochs"], record["lr"]) == (2, 1e-4)
    assert record["milestones"] == []  # AVID's 6 and 9 lie beyond a 2-epoch run
    assert set(record["layers"]) == {"conv2x", "conv3x", "conv4x", "conv5x"}
    best = record["layers"][record["best_layer"]]
    assert record["top1"] == best["video_top1"] == max(layer["video_top1"] for layer in record["layers"].values())
    assert all(0 <= layer["clip_top1"] <= 100 for layer in record["layers"].values())
    assert sum("linear-multilayer video epoch" in line for line in captured.err.splitlines()) == 2


def test_linear_multilayer_pools_each_stage_to_avids_grids():
    """conv2x–conv5x of the tiny R(2+1)D (width 8: 8, 16, 32, 64 channels) → 8·144, 16·64, 32·36, 64·16 features."""
    from avcli.evaluate.linear_multilayer import pooled_maps
    from avcli.models.video import build_video_encoder

    encoder = build_video_encoder("tiny_r2plus1d", 8).eval()
    with torch.no_grad():
        maps = pooled_maps(encoder, torch.randn(2, 3, 4, 64, 64))
    assert [m.shape for m in maps] == [(2, 8 * 144), (2, 16 * 64), (2, 32 * 36), (2, 64 * 16)]
