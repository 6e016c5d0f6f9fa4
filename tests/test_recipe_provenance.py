"""The full-size recipes carry the values their sources give (recipes/README.md), and every full-size recipe trains
with its real architecture: a user's first run is never the first time a recipe's shapes meet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avcli.recipe import load_recipe
from avcli.train.checkpoint import resolve_checkpoint

from conftest import REPO

RECIPES = REPO / "recipes"

# facebookresearch/AVID-CMA, configs/main/avid/kinetics/Cross-N1024.yaml unless another file is named
AVID = {
    "data.clip.frames": 8,  # dataset.video_clip_duration 0.5 × dataset.video_fps 16
    "data.clip.fps": 16.0,  # dataset.video_fps
    "data.clip.audio_seconds": 2.0,  # dataset.audio_clip_duration
    "data.clip.sample_rate": 24000,  # dataset.audio_fps
    "data.clip.max_offsync_s": 0.5,  # utils/main_utils.py build_dataloader: max_offsync_augm=0.5 when augmenting
    "data.clip.offsync": "avid",  # datasets/video_db.py _sample_snippet
    "data.audio.kind": "avid_spectrogram",  # dataset.spectrogram_fps 100, n_fft 512 (datasets/preprocessing.py)
    "data.augment.crop_scale": (0.08, 1.0),  # datasets/preprocessing.py VideoPrep_MSC_CJ min_area=0.08
    "data.augment.color_jitter": (0.4, 0.4, 0.4, 0.2),  # VideoPrep_MSC_CJ color=(0.4, 0.4, 0.4, 0.2)
    "data.augment.volume": 0.1,  # datasets/preprocessing.py AudioPrep volume=0.1
    "data.clips_per_item": 10,  # dataset.train.clips_per_video
    "model.video.name": "avid_r2plus1d_18",  # model.args.video_backbone R2Plus1D, depth 18
    "model.audio.name": "conv2d_10",  # model.args.audio_backbone Conv2D, depth 10
    "model.projector.hidden_dim": 512,  # model.args.proj_dim [512, 512, 128]
    "model.projector.out_dim": 128,
    "model.projector.layers": 3,
    "optimizer.name": "adam",  # optimizer.name
    "optimizer.lr": 2.0e-4,  # optimizer.lr.base_lr
    "optimizer.weight_decay": 1.0e-5,  # optimizer.weight_decay
    "schedule.name": "constant",  # optimizer.lr: multistep with gamma 1.
    "training.epochs": 30,  # optimizer.num_epochs
    "method.temperature": 0.07,  # criterions/avid.py temperature
}
XID_ONLY = {
    "data.clip.size": 224,  # dataset.crop_size
    "method.memory_bank.negatives": 1024,  # loss.args.num_negatives
    "method.memory_bank.momentum": 0.5,  # loss.args.momentum
    "method.memory_bank.loss": "nce",  # criterions/nce.py
}
ROBUST_ONLY = {
    "method.bank_negatives": 1024,  # loss.args.num_negatives (Robust-xID on AVID's memory bank)
    "method.bank_momentum": 0.5,  # loss.args.momentum
}


def _value(recipe, dotted: str):
    value = recipe
    for part in dotted.split("."):
        value = getattr(value, part)
    return tuple(value) if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("name, expected", [("xid", {**AVID, **XID_ONLY}), ("robust_xid", {**AVID, **ROBUST_ONLY})])
def test_xid_family_recipes_match_avid_cma(name, expected):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    got = {key: _value(recipe, key) for key in expected}
    assert got == pytest.approx(expected)
    # 256 clips per step over 8 GPUs (dataset.batch_size 256, required_devices 8)
    assert recipe.training.batch_size * 8 == 256


def test_every_full_size_recipe_names_its_sources():
    table = (RECIPES / "README.md").read_text()
    for name in ("xid", "robust_xid", "avts", "temporal", "movies", "tv"):
        text = (RECIPES / f"{name}.yaml").read_text()
        assert f"{name}.yaml" in table, f"recipes/README.md has no table for {name}.yaml"
        assert "the paper's setting" not in text and "reference's" not in text


FULL = ("xid", "robust_xid", "avts", "temporal", "movies")


@pytest.fixture(scope="module")
def generated_catalog(tmp_path_factory) -> Path:
    """Three 25-s H.264 + AAC videos with moving content, ingested with the default options."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from generated_media import make_video

    from avcli.cli import run

    root = tmp_path_factory.mktemp("generated")
    videos = root / "videos"
    videos.mkdir()
    for k in range(3):
        make_video(videos / f"clip_{k}.mp4", 320, 240, 25, 25.0, seed=k, gop_s=1.0)
    assert run(["ingest", str(videos), "--out", str(root / "catalog")]) == 0
    return root / "catalog"


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_every_full_size_recipe_trains_two_steps_with_its_real_architecture(generated_catalog, tmp_path, name):
    """Only batch, steps, workers and catalog are overridden (and AVTS's held-out set, 1024 pairs of its full
    model, from 1024 to 8 so that the end-of-run evaluation takes seconds on a CPU)."""
    batch = 4 if name == "movies" else 2  # a hierarchical batch holds whole titles (4 clips each)
    overrides = [f"data.catalog={generated_catalog}", f"training.batch_size={batch}", "training.steps=2",
                 "training.workers=0", "training.device=cpu", f"output.run_dir={tmp_path / 'run'}"]
    path = RECIPES / f"{name}.yaml"
    if "epochs:" in path.read_text().split("training:")[1]:
        overrides.append("~training.epochs")
    if name == "avts":
        overrides.append("method.held_out_pairs=8")
    done = subprocess.run([sys.executable, "-m", "avcli", "pretrain", str(path), *overrides], capture_output=True,
                          text=True, timeout=1200, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and torch.isfinite(torch.tensor(summary["final_loss"]))
    assert (resolve_checkpoint(tmp_path / "run") / "encoders.safetensors").exists()
