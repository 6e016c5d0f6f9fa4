"""Fingerprinting: segments, the corruption suite's files, the dHash baseline, and the index / query / dedup /
eval verbs end to end on small synthetic videos (random tiny encoders: these test the mechanics)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from avcli.cli import run
from avcli.evaluate.corruptions import CORRUPTIONS, TRIM_S, Clip, corrupt_file, read_clip, write_clip
from avcli.evaluate.perceptual_hash import dhash_video, hamming, signed
from avcli.evaluate.segments import plan_segments
from avcli.evaluate.topk import chunked_topk
from avcli.media.probe import probe_media

from conftest import tiny_recipe_dict


def test_segments_cover_the_video_and_keep_a_remainder_of_half_a_segment_or_more():
    assert plan_segments(3.0, 1.0) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert plan_segments(3.4, 1.0) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert plan_segments(3.6, 1.0)[-1] == (3.0, 3.6)
    assert plan_segments(0.4, 1.0) == [(0.0, 0.4)]


@pytest.fixture(scope="module")
def reference_clip() -> Clip:
    """2.4 s, 64×48 at 25 fps: a bright bar moving right over a gradient; a 440 Hz tone at 32 kHz."""
    t, h, w = 60, 48, 64
    frames = torch.zeros(t, h, w, 3, dtype=torch.uint8)
    frames[..., 0] = torch.linspace(0, 200, w).to(torch.uint8)
    for k in range(t):
        frames[k, :, k % (w - 8) : k % (w - 8) + 8] = 255
    audio = 0.3 * torch.sin(2 * torch.pi * 440 * torch.arange(int(2.4 * 32000)) / 32000)
    return Clip(frames, 25.0, audio, 32000)


def test_every_corruption_writes_a_decodable_file_with_the_intended_change(reference_clip, tmp_path):
    out = {}
    for name in CORRUPTIONS:
        path = corrupt_file(reference_clip, name, tmp_path / f"{name}.mp4", seed=1)
        info = probe_media(path)
        assert info.ok and info.audio_stream is not None, name
        out[name] = info
    assert (out["resize"].width, out["resize"].height) == (32, 24)
    assert (out["crop"].width, out["crop"].height) == (48, 36)
    assert out["frame_rate"].fps == pytest.approx(10)
    assert out["trim"].duration_s == pytest.approx(2.4 - TRIM_S, abs=0.05)
    assert 2.4 / 1.25 - 0.1 <= out["speed"].duration_s <= 2.4 / 0.8 + 0.1
    assert out["speed"].duration_s != pytest.approx(2.4, abs=0.02)
    assert out["audio_low_bitrate"].audio_rate == 16000
    flipped = read_clip(tmp_path / "hflip.mp4", 0, 1.0, 25, 32000).frames.float()
    clean = reference_clip.frames[:25].float()
    assert (flipped - clean.flip(2)).abs().mean() < (flipped - clean).abs().mean() / 3
    # the random edits are fixed by the seed
    again = corrupt_file(reference_clip, "speed", tmp_path / "speed-again.mp4", seed=1)
    assert probe_media(again).duration_s == pytest.approx(out["speed"].duration_s)


def test_dhash_survives_re_encoding_but_not_a_flip_and_search_is_exact_hamming(reference_clip, tmp_path):
    clean = write_clip(reference_clip, tmp_path / "clean.mp4")
    again = corrupt_file(reference_clip, "low_bitrate", tmp_path / "again.mp4", seed=0)
    flip = corrupt_file(reference_clip, "hflip", tmp_path / "flip.mp4", seed=0)
    hashes = torch.stack([dhash_video(str(p), 2.4) for p in (clean, again, flip)])
    assert hashes.shape == (3, 8 * 64)
    distance = hamming(hashes, hashes)
    assert distance[0, 1] < 40 < distance[0, 2]
    scores, found = chunked_topk(signed(hashes), signed(hashes), 3)
    assert torch.equal((512 - scores) / 2, distance.gather(1, found).float())
    assert torch.all(scores[:, 0] == 512)  # every hash is (one of) its own nearest


# ------------------------------------------------------------------------------------------ the verbs


@pytest.fixture(scope="module")
def world_videos(small_world) -> list[Path]:
    return sorted((small_world / "media").glob("*.mp4"))


@pytest.fixture
def recipe(tmp_path, write_recipe) -> Path:
    return write_recipe(tiny_recipe_dict(tmp_path / "unused-catalog", tmp_path / "run"))


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_index_then_query_finds_a_trimmed_copy_and_its_offset(world_videos, tmp_path, recipe, capsys):
    db = tmp_path / "db"
    db.mkdir()
    for video in world_videos[:4]:
        shutil.copy(video, db / video.name)
    assert run(["fingerprint", "index", str(db), "--checkpoint", "random", "--recipe", str(recipe),
                "--out", str(tmp_path / "idx")]) == 0
    (summary,) = _lines(capsys)
    assert summary["items"] == 4 and summary["segments"] >= 12 and summary["threshold"] is not None
    assert (tmp_path / "idx" / "index.json").is_file()

    original = db / world_videos[2].name
    info = probe_media(original)
    copy = corrupt_file(read_clip(original, 0, info.duration_s, 16, 16000), "trim", tmp_path / "copy.mp4", seed=0)
    assert run(["fingerprint", "query", str(tmp_path / "idx"), str(copy), "--recipe", str(recipe), "--top", "2"]) == 0
    best, second = _lines(capsys)
    assert best["path"] == str(original) and best["rank"] == 1 and second["rank"] == 2
    assert abs(best["offset_s"] - TRIM_S) <= 1.0  # within one segment
    assert best["score"] > second["score"]
    assert best["same_content"] == (best["score"] >= best["threshold"]) and best["calibration"] == "index"


def test_dedup_lists_the_copy_across_collections(world_videos, tmp_path, recipe, capsys):
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir(), test.mkdir()
    for video in world_videos[4:8]:
        shutil.copy(video, train / video.name)
    shutil.copy(world_videos[9], test / world_videos[9].name)
    leaked = read_clip(world_videos[5], 0, probe_media(world_videos[5]).duration_s, 16, 16000)
    corrupt_file(leaked, "low_bitrate", test / "leaked.mp4", seed=0)
    assert run(["fingerprint", "dedup", str(train), str(test), "--checkpoint", "random", "--recipe", str(recipe),
                "--threshold", "0.9"]) == 0
    pairs = _lines(capsys)
    assert pairs, "the re-encoded copy must be found"
    assert (Path(pairs[0]["a"]).name, Path(pairs[0]["b"]).name) == (world_videos[5].name, "leaked.mp4")
    assert pairs[0]["score"] >= 0.9 and abs(pairs[0]["offset_s"]) <= 1.0
    assert all(Path(p["a"]).parent == train and Path(p["b"]).parent == test for p in pairs)


def test_eval_reports_recall_per_corruption_and_writes_a_calibration(world_videos, tmp_path, recipe, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for video in world_videos[10:13]:
        shutil.copy(video, src / video.name)
    assert run(["fingerprint", "eval", str(src), "--checkpoint", "random", "--recipe", str(recipe), "--clip", "2",
                "--max-clips", "1", "--corruptions", "resize,trim,audio_noise", "--work", str(tmp_path / "work")]) == 0
    *rows, tail = _lines(capsys)
    assert [r["corruption"] for r in rows] == ["resize", "trim", "audio_noise", "overall"]
    assert [r["queries"] for r in rows] == [3, 3, 3, 9]
    for r in rows:
        for key in ("video_r1", "audio_r1", "combined_r1", "dhash_r1"):
            assert r[key] is None or 0.0 <= r[key] <= 1.0
    overall = rows[-1]
    assert overall["video_r1"] == pytest.approx(sum(r["video_r1"] for r in rows[:-1]) / 3, abs=1e-3)
    assert rows[0]["video_r1"] == 1.0  # half-size copies of three different videos: even random features tell them apart
    calibration = json.loads((tmp_path / "work" / "index" / "calibration.json").read_text())
    assert calibration == tail["calibration"] and calibration["positives"] == 9
    assert len(list((tmp_path / "work" / "queries" / "trim").glob("*.mp4"))) == 3


def test_fingerprint_usage_errors(tmp_path, capsys):
    assert run(["fingerprint", "query", str(tmp_path), str(tmp_path / "x.mp4")]) == 2
    assert "not an embedding index" in capsys.readouterr().err
    assert run(["fingerprint", "eval", str(tmp_path), "--checkpoint", "random", "--corruptions", "fog"]) == 2
    assert "--corruptions fog" in capsys.readouterr().err
    assert run(["fingerprint", "dedup", str(tmp_path)]) == 2
    assert "pass --checkpoint" in capsys.readouterr().err


def test_eval_reuses_the_queries_already_written_in_its_work_folder(world_videos, tmp_path, recipe, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(world_videos[10], src / world_videos[10].name)
    args = ["fingerprint", "eval", str(src), "--checkpoint", "random", "--recipe", str(recipe), "--clip", "2",
            "--max-clips", "1", "--corruptions", "resize", "--work", str(tmp_path / "work")]
    assert run(args) == 0
    first = _lines(capsys)
    query = next((tmp_path / "work" / "queries" / "resize").glob("*.mp4"))
    stamp = query.stat().st_mtime_ns
    assert run(args) == 0
    assert _lines(capsys)[:-1] == first[:-1] and query.stat().st_mtime_ns == stamp  # reused, same results
    assert run(args[:-4] + ["--seed", "1", "--corruptions", "resize", "--work", str(tmp_path / "work")]) == 0
    assert query.stat().st_mtime_ns != stamp  # another seed: written again
    queries = json.loads((tmp_path / "work" / "queries" / "queries.json").read_text())
    assert [q["corruption"] for q in queries] == ["resize"] and (tmp_path / "work" / "query-index" / "index.json").is_file()
