"""The benchmark tasks read the official split files exactly: membership of every split, labels and class
indices of miniature UCF101 / HMDB51 / ESC-50 trees match the official files, and an incomplete data root is a
clear error (exit 2) naming the counts and the first missing files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from avcli.cli import run
from avcli.errors import UsageError
from avcli.tasks import load_task

from task_trees import ESC_CSV, HMDB_SPLITS, SPLITS, UCF_LISTS, build_esc50, build_hmdb51, build_ucf101, needs_splits

pytestmark = needs_splits


@pytest.fixture(scope="module")
def ucf_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf101")
    return root, build_ucf101(root)


@pytest.fixture(scope="module")
def hmdb_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("hmdb51")
    return root, build_hmdb51(root)


def _rel(task, part: str, root: Path) -> set[str]:
    return {Path(v.path).relative_to(root).as_posix() for v in task.split(part)}


def _official_ucf(split: int, part: str, chosen: dict) -> set[str]:
    """Entries of the official list (parsed here independently of avcli) that the tree holds."""
    text = (UCF_LISTS / f"{part}list{split:02d}.txt").read_bytes().decode()
    return {line.split()[0] for line in text.split("\r\n") if line.strip() and line.split()[0] in chosen}


def _class_ind() -> dict[str, int]:
    pairs = [line.split() for line in (UCF_LISTS / "classInd.txt").read_text().splitlines() if line.strip()]
    return {name: int(number) - 1 for number, name in pairs}


def test_ucf101_split_membership_labels_and_indices_match_the_official_lists(ucf_tree):
    root, chosen = ucf_tree
    assert (root / "ucfTrainTestlist" / "trainlist01.txt").read_bytes().count(b"\r\n") > 0  # CRLF kept
    task = load_task("ucf101", root)
    class_ind = _class_ind()
    assert task.classes == sorted(class_ind, key=class_ind.get) and len(task.classes) == 101
    assert task.split_ids == ("1", "2", "3") and task.split_id == "1"
    assert task.schedule.epochs == 16 and task.schedule.milestones == (6, 10, 14)
    for split in (1, 2, 3):
        view = task.select(str(split))
        assert _rel(view, "train", root) == _official_ucf(split, "train", chosen)
        assert _rel(view, "test", root) == _official_ucf(split, "test", chosen)
        assert len(view.split("train")) + len(view.split("test")) == len(chosen) == 12
    for video in task.videos:
        cls = chosen[Path(video.path).relative_to(root).as_posix()]
        assert video.label == class_ind[cls] and task.classes[video.label] == cls
    # groups 1-7 are split 1's test set, 8-14 split 2's, 15-21 split 3's
    assert _rel(task.select("2"), "test", root) == {e for e in chosen if "_g08_" in e}


def test_ucf101_against_the_full_official_lists_is_incomplete_unless_allowed(ucf_tree):
    root, chosen = ucf_tree
    with pytest.raises(UsageError) as error:
        load_task("ucf101", root, meta=UCF_LISTS)
    message = str(error.value)
    assert "12 of the 13320 UCF101 files" in message and "--allow-missing" in message
    assert "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c02.avi" in message  # the first missing, as the list names it
    task = load_task("ucf101", root, meta=UCF_LISTS, allow_missing=True)
    assert task.n_missing == 13320 - 12
    for split in (1, 2, 3):
        assert _rel(task.select(str(split)), "test", root) == _official_ucf(split, "test", chosen)


def test_an_incomplete_data_root_exits_2_with_the_counts(ucf_tree, tmp_path, capsys, write_recipe):
    root, _ = ucf_tree
    code = run(["probe", "--task", "ucf101", "--data-root", str(root), "--task-meta", str(UCF_LISTS),
                "--checkpoint", "random"])
    assert code == 2
    err = capsys.readouterr().err
    assert "12 of the 13320 UCF101 files listed in" in err and "first missing:" in err and "Traceback" not in err
    assert run(["probe", "--task", "ucf101", "--data-root", str(tmp_path / "nowhere"), "--checkpoint", "random"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_hmdb51_flags_classes_and_unused_videos_match_the_official_files(hmdb_tree):
    root, chosen = hmdb_tree
    task = load_task("hmdb51", root)
    official_order = (SPLITS / "hmdb51" / "class_list.txt").read_text().split()
    assert task.classes == official_order and len(task.classes) == 51
    assert task.schedule.epochs == 10 and task.schedule.milestones == (3, 6, 8)
    for split in (1, 2, 3):
        expected = {"1": set(), "2": set(), "0": set()}
        for cls in {c for c in chosen.values()}:
            for line in (HMDB_SPLITS / f"{cls}_test_split{split}.txt").read_text().splitlines():
                if line.strip() and line.split()[0] in chosen:
                    expected[line.split()[1]].add(f"{cls}/{line.split()[0]}")
        view = task.select(str(split))
        assert _rel(view, "train", root) == expected["1"]
        assert _rel(view, "test", root) == expected["2"]
        assert {Path(v.path).relative_to(root).as_posix() for v in view.videos if v.split == "unused"} == expected["0"]
    assert len(task.select("1").split("train")) == len(task.select("1").split("test")) == 6  # 2 per flag and class
    for video in task.videos:
        assert task.classes[video.label] == chosen[Path(video.path).name]
        assert video.label == official_order.index(chosen[Path(video.path).name])


def test_esc50_folds_labels_and_targets_match_the_official_csv(tmp_path):
    rows = build_esc50(tmp_path)
    task = load_task("esc50", tmp_path)
    assert task.audio_only and task.svm_c == 10.0 and task.split_ids == ("1", "2", "3", "4", "5")
    by_name = {row["filename"]: row for row in rows}
    for fold in task.split_ids:
        view = task.select(fold)
        assert {Path(v.path).name for v in view.split("test")} == {r["filename"] for r in rows if r["fold"] == fold}
        assert {Path(v.path).name for v in view.split("train")} == {r["filename"] for r in rows if r["fold"] != fold}
    for video in task.videos:
        row = by_name[Path(video.path).name]
        assert video.label == int(row["target"]) and task.classes[video.label] == row["category"]
    with open(ESC_CSV, newline="") as fh:
        official = {row["filename"]: row for row in csv.DictReader(fh)}
    assert all(official[name]["fold"] == row["fold"] and official[name]["target"] == row["target"]
               for name, row in by_name.items())
    with pytest.raises(UsageError, match=r"15 of the 2000 ESC-50 files"):
        load_task("esc50", tmp_path, meta=ESC_CSV)
    full = load_task("esc50", tmp_path, meta=ESC_CSV, allow_missing=True)
    assert len(full.classes) == 50 and full.classes[41] == official_class(official, 41)


def official_class(official: dict, target: int) -> str:
    return next(row["category"] for row in official.values() if int(row["target"]) == target)
