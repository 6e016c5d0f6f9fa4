"""`avcli probe` as a command: the synthetic probe gives the same numbers as the first probe's pipeline, the
`report` subcommand beside the plain `probe --task ...` form, and reading videos from a catalog's copies."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from avcli.cli import run
from avcli.evaluate.encoders import load_eval_encoders
from avcli.evaluate.features import EvalClips, extract_features
from avcli.evaluate.linear import linear_probe
from avcli.tasks import load_task
from avcli.tasks.catalog_sources import read_from_catalog

from conftest import tiny_recipe_dict
from task_trees import build_ucf101, needs_splits


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVCLI_CACHE_DIR", str(tmp_path / "cache"))


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_synthetic_probe_matches_the_first_probe_pipeline(small_world, tmp_path, write_recipe, capsys):
    recipe = write_recipe(tiny_recipe_dict(small_world, tmp_path / "run"))
    assert run(["probe", "--task", "synthetic", "--data-root", str(small_world), "--checkpoint", "random",
                "--recipe", str(recipe), "--clips", "2", "--classifier", "sklearn"]) == 0
    records = _json_lines(capsys.readouterr().out)
    # the pipeline of the first probe, step by step: frontend statistics from one centred clip of (up to 64)
    # train videos, the mean feature of 2 evenly spaced clips, standardised logistic regression (scikit-learn's,
    # the reference; the torch classifier is compared with it in test_torch_classifiers.py)
    encoders = load_eval_encoders("random", recipe)
    task = load_task("synthetic", small_world)
    train, test = task.split("train"), task.split("test")
    dataset = EvalClips(train, encoders.recipe.data.clip, 1)
    picks = torch.linspace(0, len(train) - 1, min(64, len(train))).round().long().tolist()
    encoders.frontend.fit(torch.stack([dataset[i]["audio"] for i in picks]))
    train_x = extract_features(encoders, train, 2, torch.device("cpu"))
    test_x = extract_features(encoders, test, 2, torch.device("cpu"))
    for record in records:
        expected = linear_probe(train_x[record["modality"]], [v.label for v in train],
                                test_x[record["modality"]], [v.label for v in test])
        assert record["top1"] == expected["top1"]
        assert (record["n_train"], record["n_test"]) == (expected["n_train"], expected["n_test"])
    assert [(r["task"], r["split"], r["protocol"], r["modality"], r["clips_per_video"], r["checkpoint"])
            for r in records] == [("synthetic", "test", "linear", m, 2, "random") for m in ("video", "audio")]
    assert not (small_world / "results.jsonl").exists()


def test_report_prints_a_table_of_a_runs_results(tmp_path, capsys):
    records = [
        {"task": "esc50", "split": "1", "protocol": "svm", "modality": "audio", "top1": 40.0, "best_layer": "conv4x",
         "n_test": 400, "checkpoint": "/x/runs/a/checkpoints/step_100", "recipe_hash": "h"},
        {"task": "esc50", "split": "mean", "protocol": "svm", "modality": "audio", "top1": 41.5, "top1_std": 1.25,
         "checkpoint": "/x/runs/a/checkpoints/step_100", "recipe_hash": "h"},
        {"task": "ucf101", "split": "1", "protocol": "linear", "modality": "video", "top1": 30.0, "video_top1": 30.0,
         "clip_top1": 22.5, "n_test": 3783, "checkpoint": "random", "recipe_hash": "h"},
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert run(["probe", "report", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert _json_lines(captured.out) == records  # the results as they are, numbers included
    assert "41.50 ± 1.25" in captured.err and captured.err.startswith("| task")  # the table, on stderr
    assert run(["probe", "report", str(tmp_path), "--format", "markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| task") and len(table) == 2 + len(records) and "41.50 ± 1.25" in table[3]
    if importlib.util.find_spec("matplotlib") is None:
        assert run(["probe", "report", str(tmp_path), "--plot", str(tmp_path / "top1.png")]) == 2
        assert "matplotlib is not installed" in capsys.readouterr().err
    else:
        assert run(["probe", "report", str(tmp_path), "--plot", str(tmp_path / "top1.png")]) == 0
        assert (tmp_path / "top1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run(["probe", "report", str(tmp_path / "nothing")]) == 2
    assert "no probe results" in capsys.readouterr().err


@needs_splits
def test_catalog_videos_are_read_from_their_training_copies(tmp_path, capsys):
    root = tmp_path / "ucf101"
    build_ucf101(root, classes=("ApplyEyeMakeup", "YoYo"), groups=(1, 8))
    folders = [str(root / "ApplyEyeMakeup"), str(root / "YoYo")]
    assert run(["ingest", *folders, "--out", str(tmp_path / "catalog"), "--workers", "1", "--short-side", "32"]) == 0
    capsys.readouterr()
    task = read_from_catalog(load_task("ucf101", root), tmp_path / "catalog")
    copies = tmp_path / "catalog" / "media"
    assert all(v.media.startswith(str(copies)) and v.media != v.path for v in task.videos) and len(task.videos) == 4
    assert all(v.duration_s and v.video_stream is not None for v in task.videos)
    assert [v.path for v in task.videos] == [v.path for v in load_task("ucf101", root).videos]
