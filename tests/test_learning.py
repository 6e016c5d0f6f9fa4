"""Learning happens: a short xID run on the synthetic world beats random initialisation on the linear probe.

The quickstart recipe itself (≥ 20 points on both modalities, README) is checked by the slow test; the default
test pins the same effect at a smaller scale so that it runs in about a minute on two cores.
"""

from __future__ import annotations

import pytest
import torch

from avcli.data.ingest import ingest_synthetic
from avcli.evaluate.encoders import load_eval_encoders
from avcli.evaluate.probe import run_linear_probe
from avcli.recipe import load_recipe
from avcli.recipe.schema import SyntheticWorld
from avcli.tasks import load_task
from avcli.train.loop import pretrain

from conftest import REPO


def _probe(checkpoint, recipe_path, world, clips):
    encoders = load_eval_encoders(checkpoint, recipe_path)
    results = run_linear_probe(encoders, load_task("synthetic", world), ("video", "audio"), clips, torch.device("cpu"))
    return {r["modality"]: r["top1"] for r in results}


def _train_and_probe(tmp_path, world, overrides, clips):
    recipe = load_recipe(REPO / "recipes" / "quickstart.yaml", [f"data.catalog={world}", f"output.run_dir={tmp_path / 'run'}", *overrides])
    pretrain(recipe)
    trained = _probe(str(tmp_path / "run"), None, world, clips)
    random = _probe("random", tmp_path / "run" / "recipe.yaml", world, clips)
    return trained, random


def test_short_xid_run_beats_random_init(tmp_path):
    world = tmp_path / "world"
    ingest_synthetic(SyntheticWorld(videos=120, titles=12, faulty_fraction=0.0, min_seconds=4, max_seconds=6), world)
    trained, random = _train_and_probe(tmp_path, world, ["training.steps=400", "training.checkpoint_every=400"], 2)
    print("trained", trained, "random", random)
    assert trained["video"] >= random["video"] + 15
    assert trained["audio"] >= random["audio"] + 10


@pytest.mark.slow
def test_quickstart_recipe_beats_random_by_20_points(tmp_path):
    world = tmp_path / "world"
    trained, random = _train_and_probe(tmp_path, world, [], 4)
    print("trained", trained, "random", random)
    assert trained["video"] >= random["video"] + 20
    assert trained["audio"] >= random["audio"] + 20
