"""Features on disk as they are made (avcli.evaluate.feature_shards): shards appear while extraction runs, an
interrupted extraction resumes after its last whole shard with bit-identical features, a damaged shard is redone,
and a feature on disk streams back in order (`.shape`, `.chunks()`) or whole (`.tensor()`, `.numpy()`)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import save_file

from avcli.errors import UsageError
from avcli.evaluate import feature_shards
from avcli.evaluate.clip_features import extract_clip_features
from avcli.evaluate.clip_sampling import ClipPlan
from avcli.evaluate.encoders import load_eval_encoders
from avcli.evaluate.feature_cache import FeatureCache
from avcli.evaluate.feature_shards import ShardedExtraction, ShardedFeature, SingleFileFeature, read_complete
from avcli.tasks.base import TaskVideo

from conftest import REPO, tiny_recipe_dict
from media_helpers import write_chirp_audio

PLAN = ClipPlan("random", 3)
NAMES = {"audio", "audio.conv3x"}
KEY = "k"


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> list[TaskVideo]:
    """10 sweeps of different lengths (several windows each, none alike): 5 loader batches of 2 recordings."""
    root = tmp_path_factory.mktemp("sweeps")
    return [TaskVideo(str(write_chirp_audio(root / f"r{i}.wav", 200 + 40 * i, 3000 - 90 * i, 1.5 + 0.25 * (i % 3))),
                      i % 2, "train") for i in range(10)]


@pytest.fixture
def encoders(tmp_path, write_recipe):
    return load_eval_encoders("random", write_recipe(tiny_recipe_dict(tmp_path / "unused", tmp_path / "run")))


@pytest.fixture(autouse=True)
def _one_batch_per_shard(monkeypatch):
    monkeypatch.setenv("AVCLI_FEATURE_SHARD_MB", "0.0001")  # ~100 bytes: every shard is one batch (2 recordings)


def _extract(encoders, videos, into=None) -> dict:
    return extract_clip_features(encoders, videos, PLAN, NAMES, torch.device("cpu"), audio_task=True,
                                 audio_seconds=1.0, batch_clips=2, into=into)


def _spy_batches(monkeypatch, after=None) -> list[int]:
    """The first video of every batch given to a ShardedExtraction; `after(extraction)` runs after each."""
    firsts, real_add = [], ShardedExtraction.add

    def add(self, first, feats):
        firsts.append(first)
        real_add(self, first, feats)
        if after is not None:
            after(self)
    monkeypatch.setattr(ShardedExtraction, "add", add)
    return firsts


def test_shards_are_on_disk_while_extraction_runs(encoders, recordings, tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache", {"test": "shards"})
    folder = tmp_path / "cache" / f"{KEY}-audio"
    seen = []

    def look(extraction):
        manifest = json.loads((folder / "manifest.json").read_text())
        seen.append((extraction.next, sorted(p.name for p in folder.glob("*.safetensors")),
                     [s["file"] for s in manifest["shards"]], manifest["complete"]))
    firsts = _spy_batches(monkeypatch, look)
    found = _extract(encoders, recordings, cache.writer(KEY, NAMES, {"part": "train"}))
    assert firsts == [0, 2, 4, 6, 8]
    # after 4 recordings: their two shards are written and listed, the extraction not complete
    assert seen[1] == (4, ["000000000.safetensors", "000000002.safetensors"],
                       ["000000000.safetensors", "000000002.safetensors"], False)
    assert seen[-1][0] == 10 and len(seen[-1][1]) == 5 and seen[-1][3] is True
    whole = _extract(encoders, recordings)  # in memory, as without a cache
    for name in NAMES:
        assert isinstance(found[name], ShardedFeature) and found[name].shape == tuple(whole[name].shape)
        assert torch.equal(found[name].tensor(), whole[name])
    assert cache.get(KEY, "audio.conv3x") is not None and cache.hits == 1
    assert not list((tmp_path / "cache").rglob("*.partial"))


def test_an_interrupted_extraction_resumes_with_the_same_features(encoders, recordings, tmp_path, monkeypatch):
    whole = _extract(encoders, recordings)
    cache = FeatureCache(tmp_path / "cache", {"test": "resume"})

    def stop_after_two_shards(extraction):
        if len(extraction.writers["audio"].shards) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the 2nd shard
    _spy_batches(monkeypatch, stop_after_two_shards)
    with pytest.raises(KeyboardInterrupt):
        _extract(encoders, recordings, cache.writer(KEY, NAMES, {}))
    assert cache.get(KEY, "audio") is None  # an incomplete entry is a miss...
    monkeypatch.undo()
    monkeypatch.setenv("AVCLI_FEATURE_SHARD_MB", "0.0001")
    firsts = _spy_batches(monkeypatch)
    resumed = _extract(encoders, recordings, cache.writer(KEY, NAMES, {}))
    assert firsts == [4, 6, 8]  # ...resumed after its whole shards: the first 4 recordings are not encoded again
    for name in NAMES:
        assert torch.equal(resumed[name].tensor(), whole[name])  # bit for bit
        assert torch.equal(cache.get(KEY, name).tensor(), whole[name])


def test_a_damaged_shard_is_ignored_and_extracted_again(encoders, recordings, tmp_path, monkeypatch, caplog):
    # the avcli logger stops propagating once a CLI run in this process has configured it (avcli/log.py), so
    # listen to it directly rather than through the root logger
    monkeypatch.setattr(logging.getLogger("avcli"), "propagate", True)
    cache = FeatureCache(tmp_path / "cache", {"test": "damage"})
    whole = _extract(encoders, recordings, cache.writer(KEY, NAMES, {}))
    whole = {name: feature.tensor() for name, feature in whole.items()}
    folder = tmp_path / "cache" / f"{KEY}-audio"
    shard = folder / "000000004.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])  # truncated, still listed in the manifest
    (folder / ".000000006.safetensors.999999999.partial").write_bytes(b"half a shard of a killed run")
    assert cache.get(KEY, "audio") is None
    assert f"feature shard {shard} is incomplete or damaged" in caplog.text
    assert cache.get(KEY, "audio.conv3x") is not None  # the other feature is whole
    firsts = _spy_batches(monkeypatch)
    again = _extract(encoders, recordings, cache.writer(KEY, NAMES, {}))
    assert firsts == [4, 6, 8]  # from the damaged shard on
    for name in NAMES:
        assert torch.equal(again[name].tensor(), whole[name])
    assert not list(folder.glob("*.partial")) and read_complete(folder) is not None


def test_chunks_round_trip_and_the_single_file_format_is_still_read(tmp_path, monkeypatch):
    features = torch.randn(7, 3, 5)
    cache = FeatureCache(tmp_path / "cache", {"test": "chunks"})
    monkeypatch.setenv("AVCLI_FEATURE_SHARD_MB", str(2 * 3 * 5 * 4 / (1 << 20)))  # 2 videos a shard
    cache.put(KEY, "video", features, {"part": "test"})
    found = cache.get(KEY, "video")
    chunks = list(found.chunks())
    assert found.shape == (7, 3, 5) and [tuple(c.shape) for c in chunks] == [(2, 3, 5)] * 3 + [(1, 3, 5)]
    assert all(c.dtype == torch.float32 for c in chunks) and torch.equal(torch.cat(chunks), features)
    assert torch.equal(found.tensor(), features) and (found.numpy() == features.numpy()).all()
    # a cache entry of the earlier format (one file per key and feature) is a hit, read in slices
    save_file({"features": features}, str(tmp_path / "cache" / "old-audio_conv2x.safetensors"))
    old = cache.get("old", "audio.conv2x")
    assert isinstance(old, SingleFileFeature) and old.shape == (7, 3, 5) and cache.hits == 2
    assert [c.shape[0] for c in old.chunks()] == [2, 2, 2, 1] and torch.equal(torch.cat(list(old.chunks())), features)
    assert torch.equal(old.tensor(), features)
    monkeypatch.setenv("AVCLI_FEATURE_SHARD_MB", "lots")
    with pytest.raises(UsageError, match="AVCLI_FEATURE_SHARD_MB='lots': give a positive number of MiB"):
        feature_shards.shard_bytes()


KILLED_AFTER_THIRD_SHARD = """
import os, signal, sys
from avcli.evaluate import feature_shards
real, renamed = feature_shards._replace_atomically, []
def replace(partial, path):
    real(partial, path)
    if path.suffix == ".safetensors":
        renamed.append(path)
        if len(renamed) == 3:  # the third shard renamed, its manifest not yet written: kill -9
            os.kill(os.getpid(), signal.SIGKILL)
feature_shards._replace_atomically = replace
from avcli.cli import main
sys.argv = ["avcli", *sys.argv[1:]]
main()
"""


def test_a_probe_killed_mid_extraction_resumes_with_the_results_of_a_whole_run(small_world, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(small_world, tmp_path / "run")))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", AVCLI_FEATURE_SHARD_MB="0.0001")

    def probe(cache: str, *python: str) -> subprocess.CompletedProcess:
        # 4 clips a video and 4 clips a batch: one video a batch, so one a shard
        args = ["probe", "--task", "synthetic", "--data-root", str(small_world), "--checkpoint", "random",
                "--recipe", str(recipe), "--clips", "4", "--batch-size", "4", "--cache-dir", str(tmp_path / cache)]
        return subprocess.run([sys.executable, *python, *(args if python else ["-m", "avcli", *args])], env=env,
                              capture_output=True, text=True, timeout=600)

    clean = probe("clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    killed = probe("cache", "-c", KILLED_AFTER_THIRD_SHARD)
    assert killed.returncode == -9, killed.stderr[-3000:]
    audio = next((tmp_path / "cache").glob("*-audio"))
    manifest = json.loads((audio / "manifest.json").read_text())
    # the kill came between the third shard's rename and its manifest: 2 files, 1 listed
    assert len(list(audio.glob("*.safetensors"))) == 2 and len(manifest["shards"]) == 1
    assert not manifest["complete"]
    again = probe("cache")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming feature extraction" in again.stderr
    assert again.stdout == clean.stdout
    entries = sorted(p.name for p in (tmp_path / "clean").iterdir())
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == entries and len(entries) == 4
    for name in entries:
        assert torch.equal(read_complete(tmp_path / "cache" / name).tensor(),
                           read_complete(tmp_path / "clean" / name).tensor())
