"""Retrieval: R@k equals a brute-force reference, on the synthetic task and on a generated miniature UCF101 tree;
cross-modal search; query by example on a saved index; usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avcli.cli import run
from avcli.evaluate.encoders import load_eval_encoders
from avcli.evaluate.retrieval import KS, recall_at_k, run_retrieval
from avcli.evaluate.video_embeddings import embed_videos
from avcli.tasks import load_task
from avcli.tasks.base import Task, TaskVideo
from avcli.media.mux_audio import mux_mono_audio

from conftest import tiny_recipe_dict


def brute_force_recall(queries, q_labels, gallery, g_labels, ks=KS) -> dict[str, float]:
    """Sort every train video by cosine similarity for every test video, the slow obvious way."""
    out = {}
    for k in ks:
        hits = 0
        for q, label in zip(queries.tolist(), q_labels):
            sims = []
            for g, g_label in zip(gallery.tolist(), g_labels):
                cos = sum(a * b for a, b in zip(q, g)) / (np.linalg.norm(q) * np.linalg.norm(g))
                sims.append((cos, g_label))
            ranked = sorted(sims, key=lambda s: -s[0])[:k]
            hits += any(g_label == label for _, g_label in ranked)
        out[f"R@{k}"] = round(100.0 * hits / len(q_labels), 2)
    return out


def test_recall_at_k_counts_a_hit_when_any_top_k_neighbour_shares_the_class():
    q = torch.tensor([0, 1, 2])
    neighbours = torch.tensor([[0, 5, 5], [5, 1, 5], [5, 5, 5]])
    assert recall_at_k(q, neighbours, (1, 2, 3)) == {"R@1": 33.33, "R@2": 66.67, "R@3": 66.67}


# ------------------------------------------------------------------------------------------ miniature UCF101


CLASSES = ["ApplyEyeMakeup", "Basketball", "CliffDiving"]


def _write_class_video(path: Path, label: int, variant: int, seconds: float = 1.5, fps: int = 8) -> None:
    """A small AVI (MPEG-4 + MP3, as UCF101 ships): a class-specific moving pattern and tone, varied per video."""
    rng = np.random.default_rng(100 * label + variant)
    size = (48, 36)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        sound = out.add_stream("libmp3lame", rate=16000)
        sound.layout = "mono"
        base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]][label], np.float32)
        for t in range(int(seconds * fps)):
            image = np.tile(base, (size[1], size[0], 1)) + rng.normal(0, 20, (size[1], size[0], 3))
            x = (t * (label + 2) * 3 + variant * 5) % size[0]
            image[:, max(0, x - 4) : x + 4] = 255 - base
            frame = av.VideoFrame.from_ndarray(image.clip(0, 255).astype(np.uint8), format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        n = int(seconds * 16000)
        wave = 0.3 * np.sin(2 * np.pi * (220 * (label + 1) + 7 * variant) * np.arange(n) / 16000)
        wave = wave.astype(np.float32)
        mux_mono_audio(out, sound, wave, 16000, frame_size=1152)


def make_mini_ucf101(root: Path, groups: int = 4, clips: int = 1) -> Path:
    """root/<Class>/v_<Class>_gGG_cCC.avi plus ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt (CRLF, as
    the official files); groups 1 and 2 are the test split, as groups 1-7 are in the official split 1."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    train, test = [], []
    for label, name in enumerate(CLASSES):
        (root / name).mkdir()
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                _write_class_video(root / rel, label, 10 * g + c)
                (test if g <= 2 else train).append((rel, label + 1))
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {n}\r\n" for i, n in enumerate(CLASSES)))
    (lists / "trainlist01.txt").write_text("".join(f"{rel} {label}\r\n" for rel, label in train))
    (lists / "testlist01.txt").write_text("".join(f"{rel}\r\n" for rel, _ in test))
    return root


def read_mini_ucf101(root: Path) -> Task:
    """The split-1 lists as a Task (the ucf101 task of avcli.tasks reads the same files once it is registered)."""
    lists = root / "ucfTrainTestlist"
    classes = [line.split()[1] for line in (lists / "classInd.txt").read_text().splitlines() if line.strip()]
    videos = []
    for split, name in (("train", "trainlist01.txt"), ("test", "testlist01.txt")):
        for line in (lists / name).read_text().splitlines():
            if line.strip():
                rel = line.split()[0]
                videos.append(TaskVideo(str(root / rel), classes.index(rel.split("/")[0]), split, 1.5))
    return Task("ucf101", classes, videos)


@pytest.fixture
def tiny_encoders(tmp_path, write_recipe):
    recipe = write_recipe(tiny_recipe_dict(tmp_path / "unused-catalog", tmp_path / "run"))
    return load_eval_encoders("random", recipe), recipe


def test_mini_ucf101_retrieval_matches_brute_force(tmp_path, tiny_encoders):
    encoders, _ = tiny_encoders
    task = read_mini_ucf101(make_mini_ucf101(tmp_path / "UCF101"))
    assert len(task.split("train")) == 6 and len(task.split("test")) == 6
    pairs = [("video", "video"), ("audio", "audio")]
    results = run_retrieval(encoders, task, pairs, clips=2, device=torch.device("cpu"), ks=(1, 2, 5))
    train, test = task.split("train"), task.split("test")
    feats = {s: embed_videos(encoders, v, 2, torch.device("cpu"))[0] for s, v in (("train", train), ("test", test))}
    for result, (modality, _) in zip(results, pairs):
        expected = brute_force_recall(feats["test"][modality], [v.label for v in test], feats["train"][modality],
                                      [v.label for v in train], (1, 2, 5))
        assert {k: result[k] for k in expected} == expected
        assert result["queries"] == 6 and result["gallery_size"] == 6 and result["space"] == "pooled"
    # with four train videos per class... two per class here: R@5 over 3 classes of 2 must always hit
    assert results[0]["R@5"] == 100.0


def test_retrieve_cli_on_the_synthetic_task_matches_brute_force(small_world, tmp_path, tiny_encoders, capsys):
    encoders, recipe = tiny_encoders
    code = run(["retrieve", "--task", "synthetic", "--checkpoint", "random", "--recipe", str(recipe),
                "--data-root", str(small_world), "--clips", "2", "--query", "audio", "--gallery", "video",
                "--save-index", str(tmp_path / "idx")])
    assert code == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (result["query"], result["gallery"], result["space"]) == ("audio", "video", "joint")
    assert set(result) >= {"R@1", "R@5", "R@10", "R@20", "R@50"}
    task = load_task("synthetic", small_world)
    train, test = task.split("train"), task.split("test")
    gallery, _ = embed_videos(encoders, train, 2, torch.device("cpu"), ("video",), "joint")
    queries, _ = embed_videos(encoders, test, 2, torch.device("cpu"), ("audio",), "joint")
    expected = brute_force_recall(queries["audio"], [v.label for v in test], gallery["video"],
                                  [v.label for v in train])
    assert {k: result[k] for k in expected} == expected

    # the saved gallery index answers a query by example: a train video finds itself first
    probe = train[3].path
    assert run(["retrieve", "--index", str(tmp_path / "idx"), probe, "--top", "3", "--recipe", str(recipe)]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["path"] == probe and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert hits[0]["start_s"] == 0.0 and hits[0]["label"] == task.classes[train[3].label]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["retrieve"], "either --task"),
        (["retrieve", "--task", "synthetic", "--index", "x"], "either --task"),
        (["retrieve", "--task", "synthetic", "--checkpoint", "random", "--query", "smell"], "--query smell"),
        (["retrieve", "--task", "synthetic", "--checkpoint", "random", "--ks", "0,5"], "--ks"),
        (["retrieve", "--index", "/nonexistent-index", "a.mp4"], "not an embedding index"),
    ],
)
def test_retrieve_usage_errors_exit_2_with_one_sentence(argv, message, capsys):
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
