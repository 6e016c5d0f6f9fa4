"""Shared fixtures: a small synthetic world and recipes that train in seconds on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDIA = REPO.parent / "shared" / "data" / "media"
needs_shared = pytest.mark.skipif(not SHARED_MEDIA.exists(), reason="../shared/data/media is not beside the repo")


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """24 short videos of the synthetic world, ingested into a catalog (root = world = catalog dir)."""
    from avcli.data.ingest import ingest_synthetic
    from avcli.recipe.schema import SyntheticWorld

    root = tmp_path_factory.mktemp("world")
    spec = SyntheticWorld(videos=24, titles=4, seed=3, min_seconds=3.0, max_seconds=4.0, faulty_fraction=0.25)
    ingest_synthetic(spec, root)
    return root


def tiny_recipe_dict(catalog: Path, run_dir: Path, **training) -> dict:
    return {
        "data": {
            "catalog": str(catalog),
            "clip": {"frames": 4, "fps": 8, "size": 32, "resize": 36, "audio_seconds": 1.0, "sample_rate": 16000},
            # 64 windows for the audio statistics (the default 1,000 costs about 3 s per run on this catalog)
            "audio": {"kind": "log_mel", "n_mels": 32, "stats_clips": 64},
            "augment": {"crop_scale": [0.6, 1.0]},
        },
        "model": {
            "video": {"name": "tiny_r2plus1d", "width": 8},
            "audio": {"name": "tiny_conv2d", "width": 8},
            "projector": {"hidden_dim": 32, "out_dim": 16},
        },
        "method": {"kind": "xid", "temperature": 0.1},
        "optimizer": {"name": "adamw", "lr": 0.002},
        "training": {"steps": 6, "batch_size": 8, "workers": 0, "log_every": 1, "checkpoint_every": 3, **training},
        "output": {"run_dir": str(run_dir)},
    }


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe dict to a YAML file and return its path."""

    def write(tree: dict, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tree))
        return path

    return write
