"""Every task of the registry through `avcli probe` end to end on real (generated) media: HMDB51, Kinetics-400,
VGG-Sound, DCASE2014, `folder` and `csv` trees whose classes differ by colour and by tone, so that even a
random-init encoder separates them; each run writes its JSON lines and appends them to `results.jsonl`, and
`probe report` tabulates them. (UCF101, ESC-50 and the synthetic task run in test_probe_protocols.py and
test_probe_cli.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avcli.cli import run
from avcli.tasks.dcase2014 import CLASSES as DCASE_SCENES

from conftest import tiny_recipe_dict
from media_helpers import write_tone_audio, write_tone_video
from task_trees import COLOURS, SPLITS, TONES, build_hmdb51, needs_splits

FEW_CLIPS = ["--train-clips", "2", "--test-clips", "2", "--random-test-clips", "2", "--no-cache"]


@pytest.fixture
def tiny_recipe(tmp_path, write_recipe):
    return write_recipe(tiny_recipe_dict(tmp_path / "unused", tmp_path / "run"))


def _probe(args: list[str], results: Path, recipe: Path, capsys) -> list[dict]:
    code = run(["probe", *args, "--checkpoint", "random", "--recipe", str(recipe), "--results-dir", str(results),
                *FEW_CLIPS])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return [json.loads(line) for line in captured.out.splitlines() if line.strip()]


def _video(path: Path, cls: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tone_video(path, COLOURS[cls], TONES[cls], seconds=1.0)


def _sound(path: Path, cls: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tone_audio(path, TONES[cls], seconds=0.6)


@needs_splits
def test_hmdb51_both_modalities_skip_the_unused_videos(tmp_path, tiny_recipe, capsys):
    root = tmp_path / "hmdb51"
    build_hmdb51(root, classes=("brush_hair", "kick"), per_flag=2)
    records = _probe(["--task", "hmdb51", "--data-root", str(root), "--modality", "both"], tmp_path / "res",
                     tiny_recipe, capsys)
    assert [(r["task"], r["split"], r["modality"]) for r in records] == [("hmdb51", "1", "video"),
                                                                         ("hmdb51", "1", "audio")]
    for record in records:
        assert (record["n_train"], record["n_test"]) == (4, 4)  # flag 0 is neither
        assert record["video_top1"] == 100.0  # colour / tone per class
    assert [json.loads(line) for line in (tmp_path / "res" / "results.jsonl").read_text().splitlines()] == records


@needs_splits
def test_kinetics400_with_the_label_map_and_knn(tmp_path, tiny_recipe, capsys):
    root = tmp_path / "k400"
    names = ("abseiling", "zumba")
    for split in ("train", "val"):
        for cls, name in enumerate(names):
            for n in range(2):
                _video(root / split / name / f"{name[:5]}{n}xxxxxx_000001_000011.mp4", cls)
    records = _probe(["--task", "kinetics400", "--data-root", str(root), "--task-meta",
                      str(SPLITS / "kinetics400" / "label_map_k400.txt"), "--allow-missing", "--protocol", "knn",
                      "--k", "2", "--modality", "video"], tmp_path / "res", tiny_recipe, capsys)
    (record,) = records
    assert (record["task"], record["protocol"], record["n_train"], record["n_test"]) == ("kinetics400", "knn", 4, 4)
    assert record["top1"] == 100.0


def test_vggsound_clips_on_disk_and_the_missing_count(tmp_path, tiny_recipe, capsys):
    root = tmp_path / "vggsound"
    rows = []
    for cls, label in enumerate(("dog barking", "car horn")):
        for n, split in enumerate(("train", "train", "test")):
            ytid = f"{label[:3]}{n}".ljust(11, "x")
            _video(root / "clips" / f"{ytid}_000010.mp4", cls)
            rows.append(f"{ytid},10,{label},{split}\n")
    rows.append("missingxxxx,0,car horn,test\n")
    (root / "vggsound.csv").write_text("".join(rows))
    (record,) = _probe(["--task", "vggsound", "--data-root", str(root), "--modality", "audio"], tmp_path / "res",
                       tiny_recipe, capsys)
    assert (record["n_train"], record["n_test"]) == (4, 2) and record["top1"] == 100.0


def test_dcase2014_audio_svm(tmp_path, tiny_recipe, capsys):
    root = tmp_path / "dcase"
    for split in ("train", "test"):
        for scene_index, scene in enumerate(DCASE_SCENES):
            for n in range(1, 11):
                _sound(root / split / f"{scene}{n:02d}.wav", scene_index % 2)  # two tones among ten scenes
    (record,) = _probe(["--task", "dcase2014", "--data-root", str(root), "--protocol", "svm"], tmp_path / "res",
                       tiny_recipe, capsys)
    assert (record["protocol"], record["modality"], record["c"], record["n_train"], record["n_test"]) == (
        "svm", "audio", 1.0, 100, 100)
    assert record["best_layer"] in record["layers"] and record["top1"] == record["layers"][record["best_layer"]]
    assert 100 / 10 < record["top1"] <= 100 / 10 * 2 + 1e-6  # tones tell the pair apart, not the scene in it


def test_folder_and_csv_tasks_and_the_report(tmp_path, tiny_recipe, capsys):
    folder = tmp_path / "mine"
    for cls, name in enumerate(("hum", "whistle")):
        for n in range(5):
            _sound(folder / name / f"{name}{n}.flac", cls)
    results = tmp_path / "res"
    by_fold = _probe(["--task", "folder", "--data-root", str(folder), "--splits", "all"], results, tiny_recipe, capsys)
    assert [r["split"] for r in by_fold] == ["1", "2", "3", "4", "5", "mean"]
    assert all(r["n_test"] == 2 and r["top1"] == 100.0 for r in by_fold[:5]) and by_fold[5]["top1_std"] == 0.0
    listing = tmp_path / "list.csv"
    listing.write_text("path,label,split\n" + "".join(
        f"mine/{name}/{name}{n}.flac,{name},{'test' if n == 4 else 'train'}\n"
        for name in ("hum", "whistle") for n in range(5)))
    (record,) = _probe(["--task", "csv", "--data-root", str(listing)], results, tiny_recipe, capsys)
    assert (record["task"], record["n_train"], record["n_test"], record["top1"]) == ("csv", 8, 2, 100.0)
    assert len((results / "results.jsonl").read_text().splitlines()) == 7
    assert run(["probe", "report", str(results)]) == 0
    table = capsys.readouterr()
    assert len([line for line in table.out.splitlines() if line.strip()]) == 7
    assert "folder" in table.err and "csv" in table.err
