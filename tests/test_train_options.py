"""Training options of issue 6 on one process: non-finite steps, accumulation, clipping, precision, memory
format, determinism, TensorBoard; and `avcli pretrain export`."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from avcli.cli import run
from avcli.errors import AvcliError, Interrupted, UsageError
from avcli.recipe import recipe_from_dict
from avcli.train.checkpoint import load_train_state, resolve_checkpoint
from avcli.train.loop import pretrain
from avcli.train.metrics import read_metrics
from avcli.train.step import BufferSnapshot

from conftest import tiny_recipe_dict


def _recipe(world, run_dir, **training):
    return recipe_from_dict(tiny_recipe_dict(world, run_dir, **training))


def _poison(monkeypatch, steps: set[int]):
    """Make the loss NaN on the given (1-based) forward calls."""
    import avcli.train.step as step_module

    original, calls = step_module.TrainStep.forward, {"n": 0}

    def forward(self, batch):
        calls["n"] += 1
        loss, stats = original(self, batch)
        return (loss * math.nan if calls["n"] in steps else loss), stats

    monkeypatch.setattr(step_module.TrainStep, "forward", forward)


def test_a_non_finite_step_is_skipped_counted_and_undone(small_world, tmp_path, monkeypatch):
    _poison(monkeypatch, {2})
    summary = pretrain(_recipe(small_world, tmp_path / "run", steps=4, checkpoint_every=100))
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [m["nonfinite_steps"] for m in metrics] == [0, 1, 1, 1]
    assert metrics[1]["loss"] is None and all(math.isfinite(m["loss"]) for m in metrics if m["step"] != 2)
    assert summary["steps"] == 4 and load_train_state(resolve_checkpoint(tmp_path / "run"))["nonfinite_steps"] == 1


def test_too_many_non_finite_steps_in_a_row_stop_with_a_clear_error(small_world, tmp_path, monkeypatch):
    _poison(monkeypatch, {2, 3, 4, 5})
    with pytest.raises(AvcliError, match=r"not finite for 2 steps in a row .*max_nonfinite_steps=2.*optimizer.lr"):
        pretrain(_recipe(small_world, tmp_path / "run", steps=6, max_nonfinite_steps=2))


def test_buffer_snapshot_undoes_what_a_forward_changed():
    module = torch.nn.BatchNorm1d(3)
    snapshot = BufferSnapshot(module)
    snapshot.take()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    module(torch.randn(5, 3) * math.nan)
    assert torch.isnan(module.running_mean).all()
    snapshot.restore()
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key])


def test_gradient_accumulation_and_clipping(small_world, tmp_path):
    """24 items, micro-batches of 4, 2 per step: 3 steps per epoch; the global gradient norm is logged."""
    pretrain(_recipe(small_world, tmp_path / "run", steps=4, batch_size=4, grad_accum_steps=2, grad_clip=0.5,
                     checkpoint_every=100))
    state = load_train_state(resolve_checkpoint(tmp_path / "run"))
    assert (state["step"], state["epoch"], state["batch_in_epoch"], state["samples_seen"]) == (4, 1, 2, 32)
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [0, 0, 0, 1] and all(m["grad_norm"] > 0 for m in metrics)


def test_log_line_and_metrics_carry_throughput_and_memory(small_world, tmp_path, caplog):
    pretrain(_recipe(small_world, tmp_path / "run", steps=2, checkpoint_every=100))
    first = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert first["samples_per_s"] > 0 and first["samples_per_s_per_device"] == first["samples_per_s"]
    assert 0 <= first["data_time_frac"] <= 1 and first["step_time_s"] > 0 and first["peak_mem_gb"] > 0


def test_bf16_autocast_and_channels_last_train_on_cpu(small_world, tmp_path):
    plain = pretrain(_recipe(small_world, tmp_path / "plain", steps=2))
    pretrain(_recipe(small_world, tmp_path / "cl", steps=2, channels_last=True))
    first = [read_metrics(tmp_path / run / "metrics.jsonl")[0]["loss"] for run in ("plain", "cl")]
    assert first[1] == pytest.approx(first[0], abs=1e-5)  # a memory layout, not another model
    bf16 = pretrain(_recipe(small_world, tmp_path / "bf16", steps=2, precision="bf16"))
    assert math.isfinite(bf16["final_loss"]) and math.isfinite(plain["final_loss"])
    # the first step's loss (same weights, same batch) differs by bf16 rounding only; after an update the two
    # runs may drift apart by more (the second step's loss differed by 5 % in one full-suite run)
    first_bf16 = read_metrics(tmp_path / "bf16" / "metrics.jsonl")[0]["loss"]
    assert first_bf16 == pytest.approx(first[0], rel=0.02)


def test_deterministic_resume_is_bit_identical(small_world, tmp_path, monkeypatch):
    import avcli.train.loop as loop
    from test_pretrain import _StopAfter

    straight = _recipe(small_world, tmp_path / "straight", steps=5, checkpoint_every=100, deterministic=True)
    pretrain(straight)
    resumed = _recipe(small_world, tmp_path / "resumed", steps=5, checkpoint_every=100, deterministic=True)
    monkeypatch.setattr(loop, "_stop_requests", lambda: _StopAfter(2))
    with pytest.raises(Interrupted):
        pretrain(resumed)
    monkeypatch.undo()
    pretrain(resumed, resume="auto")
    got = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    expected = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    assert [m["loss"] for m in got] == [m["loss"] for m in expected] and len(got) == 5
    a = load_file(str(resolve_checkpoint(tmp_path / "straight") / "encoders.safetensors"))
    b = load_file(str(resolve_checkpoint(tmp_path / "resumed") / "encoders.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.are_deterministic_algorithms_enabled()  # the setting does not leak out of the run


def test_tensorboard_is_opt_in_and_a_missing_package_is_a_clear_error(small_world, tmp_path, monkeypatch):
    import importlib.util

    import avcli.train.loop as loop
    import avcli.train.observe as observe

    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(UsageError, match="training.tensorboard: the tensorboard package is not installed"):
            pretrain(_recipe(small_world, tmp_path / "missing", steps=1, tensorboard=True))
        assert not (tmp_path / "missing" / "metrics.jsonl").exists()
    written = []

    class FakeWriter:
        def __init__(self, log_dir, purge_step=None):
            self.log_dir = log_dir

        def add_scalar(self, key, value, step):
            written.append((key, step))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(observe, "require_tensorboard", lambda: FakeWriter)
    monkeypatch.setattr(loop, "require_tensorboard", lambda: FakeWriter)
    pretrain(_recipe(small_world, tmp_path / "run", steps=2, tensorboard=True))
    assert ("loss", 1) in written and ("samples_per_s", 2) in written


# ---------------------------------------------------------------------------------------------------- export


def _checkpoint(world, run_dir, video: str, audio: str):
    """A checkpoint of freshly initialised encoders (export is about the format, not about training)."""
    from avcli.media.audio_features import build_audio_frontend
    from avcli.models import build_model
    from avcli.recipe import recipe_to_yaml
    from avcli.train.checkpoint import save_checkpoint

    tree = tiny_recipe_dict(world, run_dir)
    tree["model"]["video"], tree["model"]["audio"] = {"name": video}, {"name": audio}
    recipe = recipe_from_dict(tree)
    torch.manual_seed(0)
    model = build_model(recipe.model)
    frontend = build_audio_frontend(recipe.data.audio, recipe.data.clip.sample_rate)
    frontend.mean.normal_()
    save_checkpoint(run_dir, 3, model, frontend, {"step": 3}, recipe_to_yaml(recipe), 1)
    return model, frontend


def test_exported_encoders_load_into_plain_torchvision_and_give_avcli_features(small_world, tmp_path, capsys):
    import torchvision

    model, frontend = _checkpoint(small_world, tmp_path / "run", "r2plus1d_18", "resnet18_2d")
    assert run(["pretrain", "export", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["video"]["torchvision"] and summary["video"]["architecture"].endswith("r2plus1d_18")

    video = torchvision.models.video.r2plus1d_18()
    video.fc = torch.nn.Identity()
    video.load_state_dict(load_file(str(tmp_path / "out" / "video_encoder.safetensors")))  # strict
    audio = torchvision.models.resnet18()
    audio.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    audio.fc = torch.nn.Identity()
    audio.load_state_dict(load_file(str(tmp_path / "out" / "audio_encoder.safetensors")))
    model.eval(), video.eval(), audio.eval()
    clips, specs = torch.randn(2, 3, 4, 32, 32), torch.randn(2, 1, 100, 32)
    with torch.no_grad():
        torch.testing.assert_close(video(clips), model.video(clips), rtol=0, atol=0)
        torch.testing.assert_close(audio(specs), model.audio(specs), rtol=0, atol=0)

    info = json.loads((tmp_path / "out" / "preprocessing.json").read_text())
    assert info["video"]["input"]["frames"] == 4 and info["video"]["input"]["fps"] == 8
    assert info["video"]["input"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    features = info["audio"]["input"]
    assert features["sample_rate"] == 16000 and features["n_mels"] == 32 and features["hop_length"] == 160
    assert features["normalisation"]["mean"] == pytest.approx(frontend.mean.tolist())


def test_export_of_an_avcli_architecture_says_so(small_world, tmp_path):
    from avcli.train.export import export_encoders

    model, _ = _checkpoint(small_world, tmp_path / "run", "tiny_r2plus1d", "tiny_conv2d")
    export_encoders(tmp_path / "run" / "checkpoints" / "step_3", tmp_path / "out")
    info = json.loads((tmp_path / "out" / "preprocessing.json").read_text())
    assert info["video"]["torchvision"] is False and "not a torchvision one" in info["video"]["note"]
    saved = load_file(str(tmp_path / "out" / "video_encoder.safetensors"))
    assert saved.keys() == model.video.state_dict().keys()


@pytest.mark.slow
def test_compiled_encoders_train_and_keep_their_parameter_names(small_world, tmp_path):
    """torch.compile on CPU (inductor needs a C++ compiler; the first step compiles for minutes)."""
    plain = pretrain(_recipe(small_world, tmp_path / "plain", steps=2))
    compiled = pretrain(_recipe(small_world, tmp_path / "compiled", steps=2, compile=True))
    assert compiled["final_loss"] == pytest.approx(plain["final_loss"], abs=1e-3)
    a = load_file(str(resolve_checkpoint(tmp_path / "plain") / "encoders.safetensors"))
    b = load_file(str(resolve_checkpoint(tmp_path / "compiled") / "encoders.safetensors"))
    assert a.keys() == b.keys()


def test_audio_statistics_are_fitted_on_stats_clips_windows_and_reported(small_world, tmp_path):
    """data.audio.stats_clips windows spread over the catalog (24 items here: 50 windows = 2–3 per item, spread
    along each); the count is saved with the checkpoint and in the export's preprocessing.json."""
    from avcli.data.catalog import Catalog
    from avcli.recipe.schema import Clip
    from avcli.train.export import export_encoders
    from avcli.train.loop import stats_windows

    with Catalog(small_world) as catalog:
        items = catalog.items(status="ok")
    clip = Clip(frames=4, fps=8, size=32, audio_seconds=1.0)
    windows = [spec.windows[0] for spec in stats_windows(items, clip, 50)]
    assert len(windows) == 50 and all(w.video_start is None for w in windows)  # sound only
    assert sorted({w.item for w in windows}) == list(range(24))
    first = [w.audio_start for w in windows if w.item == 0]  # 3 windows at 1/6, 3/6, 5/6 of the room
    room = items[0].duration_s - 1.0
    assert first == pytest.approx([room / 6, room / 2, 5 * room / 6])
    assert len(stats_windows(items, clip, 5)) == 5  # fewer than items: items spread, one centred window each

    tree = tiny_recipe_dict(small_world, tmp_path / "run", steps=1, checkpoint_every=100)
    tree["data"]["audio"]["stats_clips"] = 50
    pretrain(recipe_from_dict(tree))
    assert load_train_state(resolve_checkpoint(tmp_path / "run"))["audio_stats_clips"] == 50
    export_encoders(tmp_path / "run", tmp_path / "export")
    described = json.loads((tmp_path / "export" / "preprocessing.json").read_text())
    assert described["audio"]["input"]["normalisation"]["fitted_on_windows"] == 50
