"""The other tasks' loaders (no media decoded): VGG-Sound, Kinetics-400, DCASE2014, folder and csv, the
generated stratified folds, the real sonic-pi audio set through `csv`, and the task list."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from avcli.cli import run
from avcli.errors import UsageError
from avcli.tasks import TASKS, load_task
from avcli.tasks.files import stratified_folds

from task_trees import SPLITS, needs_splits

SONIC_PI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "audio_sonic_pi" / "samples"


def _touch(root: Path, rel: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_list_tasks_prints_every_task_with_its_layout(capsys):
    assert run(["probe", "--list-tasks"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["task"] for line in lines] == list(TASKS)
    assert set(TASKS) == {"ucf101", "hmdb51", "esc50", "dcase2014", "vggsound", "kinetics400", "synthetic", "folder",
                          "csv"}
    assert all(line["data_root"] and line["description"] for line in lines)


def test_vggsound_keeps_the_clips_on_disk_and_counts_the_missing(tmp_path):
    (tmp_path / "vggsound.csv").write_text(
        "---g-Abc1234,30,dog barking,train\nAAAAAAAAAAA,0,car horn,test\nBBBBBBBBBBB,10,dog barking,test\n"
        "CCCCCCCCCCC,5,ambulance siren,train\nDDDDDDDDDDD,7,car horn,train\n"
    )
    _touch(tmp_path, "clips/---g-Abc1234_000030.mp4")
    _touch(tmp_path, "clips/AAAAAAAAAAA_000000.mp4")
    _touch(tmp_path, "clips/BBBBBBBBBBB_000010.mp4")
    _touch(tmp_path, "clips/ZZZZZZZZZZZ_000001.mp4")  # not listed: ignored
    task = load_task("vggsound", tmp_path)
    assert task.classes == ["ambulance siren", "car horn", "dog barking"] and task.n_missing == 2
    assert {Path(v.path).name: (task.classes[v.label], v.split) for v in task.videos} == {
        "---g-Abc1234_000030.mp4": ("dog barking", "train"),
        "AAAAAAAAAAA_000000.mp4": ("car horn", "test"),
        "BBBBBBBBBBB_000010.mp4": ("dog barking", "test"),
    }
    assert load_task("vggsound", tmp_path / "clips").n_missing == 2  # the CSV beside the root is found too
    _touch(tmp_path, "elsewhere/clips/AAAAAAAAAAA_000000.mp4")
    with pytest.raises(UsageError, match="no vggsound.csv"):
        load_task("vggsound", tmp_path / "elsewhere" / "clips")


@needs_splits
def test_kinetics400_class_indices_follow_the_label_map(tmp_path):
    label_map = SPLITS / "kinetics400" / "label_map_k400.txt"
    names = label_map.read_text().splitlines()
    for split in ("train", "val"):
        for label in ("abseiling", "air drumming", "zumba"):
            _touch(tmp_path, f"{split}/{label.replace(' ', '_')}/abcdefghijk_000001_000011.mp4")
    with pytest.raises(UsageError, match=r"3 of the 400 Kinetics-400 class folders listed in"):
        load_task("kinetics400", tmp_path, meta=label_map)
    task = load_task("kinetics400", tmp_path, meta=label_map, allow_missing=True)
    assert len(task.classes) == 400 and task.n_missing == 397
    assert sorted((task.classes[v.label], v.label, v.split) for v in task.videos) == sorted(
        (label, names.index(label), split) for label in ("abseiling", "air drumming", "zumba")
        for split in ("train", "test"))
    plain = load_task("kinetics400", tmp_path)  # no label map: the folders, alphabetically
    assert plain.classes == ["abseiling", "air drumming", "zumba"]


def test_dcase2014_scenes_from_file_names_and_the_expected_counts(tmp_path):
    from avcli.tasks.dcase2014 import CLASSES

    for split in ("train", "test"):
        for scene in CLASSES:
            for n in range(1, 11):
                _touch(tmp_path, f"{split}/{scene}{n:02d}.wav")
    task = load_task("dcase2014", tmp_path)
    assert task.audio_only and task.svm_c == 1.0 and len(task.split("train")) == len(task.split("test")) == 100
    assert all(Path(v.path).stem.rstrip("0123456789") == task.classes[v.label] for v in task.videos)
    (tmp_path / "test" / "park07.wav").unlink()
    with pytest.raises(UsageError, match=r"199 of the 200 DCASE2014 files .*first missing: test/park07\.wav"):
        load_task("dcase2014", tmp_path)
    assert load_task("dcase2014", tmp_path, allow_missing=True).n_missing == 1


def test_folder_task_with_split_folders(tmp_path):
    for rel in ("train/cat/a.mp4", "train/cat/b.mp4", "train/dog/c.mp4", "test/cat/d.mp4", "test/dog/e.mp4",
                "val/dog/f.mp4"):
        _touch(tmp_path, rel)
    task = load_task("folder", tmp_path)
    assert task.classes == ["cat", "dog"] and not task.audio_only and task.split_ids == ("test",)
    assert {Path(v.path).name: (v.label, v.split) for v in task.videos} == {
        "a.mp4": (0, "train"), "b.mp4": (0, "train"), "c.mp4": (1, "train"), "d.mp4": (0, "test"),
        "e.mp4": (1, "test"),  # val/ is left out: there is a test/ folder
    }


def test_generated_folds_are_stratified_and_do_not_depend_on_where_the_data_lives(tmp_path):
    names = [f"{cls}/{cls}_{i}.flac" for cls, n in (("a", 7), ("b", 5), ("c", 3)) for i in range(n)]
    for copy in ("one", "two/deeper"):
        for rel in names:
            _touch(tmp_path / copy, rel)
    first, second = load_task("folder", tmp_path / "one"), load_task("folder", tmp_path / "two" / "deeper")
    assert first.audio_only and first.split_ids == ("1", "2", "3", "4", "5") and first.notes["folds"] == "generated"
    folds = {Path(v.path).name: dict(v.splits) for v in first.videos}
    assert folds == {Path(v.path).name: dict(v.splits) for v in second.videos}
    test_fold = {name: next(f for f, m in splits.items() if m == "test") for name, splits in folds.items()}
    assert sum(Counter(test_fold.values()).values()) == 15
    for cls, n in (("a", 7), ("b", 5), ("c", 3)):  # each class as evenly spread as its size allows
        per_fold = Counter(f for name, f in test_fold.items() if name.startswith(f"{cls}_"))
        assert max(per_fold.values()) - min(per_fold.get(str(k), 0) for k in range(1, 6)) <= 1
        assert sum(per_fold.values()) == n
    # more files of one class never move another class's files
    keys = [f"{name}" for name in names]
    labels = [name.split("/")[0] for name in names]
    before = dict(zip(keys, stratified_folds(keys, labels)))
    after = dict(zip(keys + ["a/a_new.flac"], stratified_folds(keys + ["a/a_new.flac"], labels + ["a"])))
    assert all(before[k] == after[k] for k in keys if not k.startswith("a/"))


def test_csv_task_with_folds_and_its_errors(tmp_path, capsys):
    for name in ("a.wav", "b.wav", "c.wav", "d.wav"):
        _touch(tmp_path, f"media/{name}")
    table = tmp_path / "list.csv"
    table.write_text("path,label,split\nmedia/a.wav,x,1\nmedia/b.wav,y,1\nmedia/c.wav,x,2\nmedia/d.wav,y,2\n")
    task = load_task("csv", table)
    assert task.audio_only and task.split_ids == ("1", "2") and task.classes == ["x", "y"]
    assert {Path(v.path).name for v in task.select("2").split("test")} == {"c.wav", "d.wav"}
    assert {Path(v.path).name for v in task.select("2").split("train")} == {"a.wav", "b.wav"}
    table.write_text("media/a.wav,x,train\nmedia/b.wav,y,train\nmedia/c.wav,x,test\nmedia/missing.wav,y,test\n")
    with pytest.raises(UsageError, match=r"3 of the 4 csv files .*first missing: media/missing\.wav"):
        load_task("csv", table)
    assert [v.split for v in load_task("csv", table, allow_missing=True).videos] == ["train", "train", "test"]
    table.write_text("media/a.wav\n")
    assert run(["probe", "--task", "csv", "--data-root", str(table), "--checkpoint", "random"]) == 2
    assert f"{table}:1: expected 'path,label[,split]'" in capsys.readouterr().err


@pytest.mark.skipif(not SONIC_PI.exists(), reason="../shared/data/audio_sonic_pi is not beside the repo")
def test_the_real_sonic_pi_set_through_csv(tmp_path):
    files = sorted(SONIC_PI.glob("*.flac"))
    (tmp_path / "sonic.csv").write_text("path,label\n" + "".join(f"{p},{p.name.split('_')[0]}\n" for p in files))
    task = load_task("csv", tmp_path / "sonic.csv")
    assert len(task.videos) == 165 and task.audio_only and len(task.classes) == 14
    assert Counter(task.classes[v.label] for v in task.videos)["tabla"] == 26
    sizes = [len(task.select(fold).split("test")) for fold in task.split_ids]
    assert sizes == [34, 33, 34, 33, 31]  # pinned: the generated folds are deterministic
    assert all(len(task.select(fold).split("train")) == 165 - n for fold, n in zip(task.split_ids, sizes))
    # another CSV listing the same files gives the same folds (keys: paths relative to the CSV's folder, or names)
    shutil.copy(tmp_path / "sonic.csv", tmp_path / "again.csv")
    again = load_task("csv", tmp_path / "again.csv")
    assert [dict(v.splits) for v in again.videos] == [dict(v.splits) for v in task.videos]
