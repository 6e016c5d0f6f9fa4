"""Pretraining: run directory layout, metrics, checkpoints (round trip), resume, refusal to overwrite."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from avcli.cli import run
from avcli.errors import Interrupted, UsageError
from avcli.media.audio_features import build_audio_frontend
from avcli.models import build_model
from avcli.recipe import load_recipe, recipe_from_dict
from avcli.train.checkpoint import load_encoders, load_train_state, resolve_checkpoint
from avcli.train.loop import pretrain
from avcli.train.metrics import read_metrics

from conftest import tiny_recipe_dict


def _losses(run_dir):
    return [(m["step"], m["loss"]) for m in read_metrics(run_dir / "metrics.jsonl")]


def test_run_directory_layout_and_outputs(small_world, tmp_path, write_recipe, capsys):
    run_dir = tmp_path / "run"
    path = write_recipe(tiny_recipe_dict(small_world, run_dir))
    assert run(["pretrain", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 6 and summary["checkpoint"].endswith("step_6")
    assert (run_dir / "recipe.yaml").exists()
    metrics = read_metrics(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "lr", "samples_per_s", "data_time_frac", "epoch"):
        assert key in metrics[0]
    steps = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert steps == ["step_3", "step_6"]
    assert (run_dir / "checkpoints" / "latest").resolve().name == "step_6"
    for name in ("encoders.safetensors", "train_state.pt", "recipe.yaml"):
        assert (run_dir / "checkpoints" / "step_6" / name).exists()
    state = load_train_state(run_dir / "checkpoints" / "step_6")  # weights_only=True
    assert state["step"] == 6 and "optimizer" in state and "rng" in state


def test_checkpoint_round_trip_gives_identical_encoders(small_world, tmp_path):
    recipe = recipe_from_dict(tiny_recipe_dict(small_world, tmp_path / "run", steps=2, checkpoint_every=2))
    pretrain(recipe)
    step_dir = resolve_checkpoint(tmp_path / "run")
    saved = load_file(str(step_dir / "encoders.safetensors"))
    assert any(k.startswith("audio_frontend.") for k in saved)
    model = build_model(recipe.model)
    frontend = build_audio_frontend(recipe.data.audio, recipe.data.clip.sample_rate)
    load_encoders(step_dir / "encoders.safetensors", model, frontend)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key])
    assert bool(frontend.fitted)
    # and the recipe saved beside the checkpoint rebuilds the same architecture
    assert load_recipe(step_dir / "recipe.yaml").model == recipe.model


class _StopAfter:
    """Stands in for the signal handler: a stop is requested once the loop has finished `steps` steps."""

    def __init__(self, steps: int):
        self.steps, self.checks = steps, 0

    @property
    def requested(self):
        self.checks += 1
        return "SIGTERM" if self.checks >= self.steps else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_resume_continues_with_the_same_losses(small_world, tmp_path, monkeypatch):
    import avcli.train.loop as loop

    straight = recipe_from_dict(tiny_recipe_dict(small_world, tmp_path / "straight", steps=6, checkpoint_every=2))
    pretrain(straight)
    interrupted = recipe_from_dict(tiny_recipe_dict(small_world, tmp_path / "resumed", steps=6, checkpoint_every=2))
    monkeypatch.setattr(loop, "_stop_requests", lambda: _StopAfter(3))
    with pytest.raises(Interrupted):
        pretrain(interrupted)
    assert [s for s, _ in _losses(tmp_path / "resumed")] == [1, 2, 3]
    monkeypatch.undo()
    pretrain(interrupted, resume="auto")
    expected, got = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
    assert [s for s, _ in got] == [1, 2, 3, 4, 5, 6]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], abs=1e-5)


def test_a_used_run_directory_is_not_overwritten(small_world, tmp_path):
    recipe = recipe_from_dict(tiny_recipe_dict(small_world, tmp_path / "run", steps=1, checkpoint_every=1))
    pretrain(recipe)
    with pytest.raises(UsageError, match="--resume auto"):
        pretrain(recipe)


def test_resume_auto_on_a_finished_run_does_nothing_more(small_world, tmp_path):
    recipe = recipe_from_dict(tiny_recipe_dict(small_world, tmp_path / "run", steps=2, checkpoint_every=1))
    pretrain(recipe)
    summary = pretrain(recipe, resume="auto")
    assert summary["steps"] == 2
    assert [s for s, _ in _losses(tmp_path / "run")] == [1, 2]


def test_stop_request_checkpoints_and_raises_interrupted(small_world, tmp_path, monkeypatch, capsys):
    import avcli.train.loop as loop

    monkeypatch.setattr(loop, "_stop_requests", lambda: _StopAfter(1))
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps(tiny_recipe_dict(small_world, tmp_path / "run", steps=5)))
    assert run(["pretrain", str(path)]) == 4
    assert "--resume auto" in capsys.readouterr().err
    assert load_train_state(resolve_checkpoint(tmp_path / "run"))["step"] == 1


def test_batch_larger_than_the_catalog_is_a_clear_error(small_world, tmp_path):
    recipe = recipe_from_dict(tiny_recipe_dict(small_world, tmp_path / "run", batch_size=500))
    with pytest.raises(UsageError, match="batch_size"):
        pretrain(recipe)
