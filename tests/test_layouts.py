"""Dataset layouts: labels, splits and extra fields from paths and the official split files (no media opened)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from avcli.data.layouts import LAYOUTS, get_layout
from avcli.errors import UsageError

SPLITS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "splits"
UCF_LISTS = SPLITS / "ucf101" / "ucfTrainTestlist"
HMDB_SPLITS = SPLITS / "hmdb51" / "testTrainMulti_7030_splits"
VGG_TEST = SPLITS / "vggsound" / "test.csv"
K400_MAP = SPLITS / "kinetics400" / "label_map_k400.txt"

needs_splits = pytest.mark.skipif(not SPLITS.exists(), reason="../shared/data/splits is not beside the repo")


def _touch(root: Path, rel: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def test_unknown_layout_lists_the_choices(tmp_path):
    choices = "folder, kinetics, ucf101, hmdb51, vggsound"
    with pytest.raises(UsageError, match=f"unknown layout 'imagenet'; choose one of: {choices}"):
        get_layout("imagenet", tmp_path, None)
    with pytest.raises(UsageError, match=r"nope\.txt: no such file"):
        get_layout("kinetics", tmp_path, tmp_path / "nope.txt")
    assert {name: get_layout(name, tmp_path, None).name for name in ("folder", "kinetics", "vggsound")} == {
        "folder": "folder", "kinetics": "kinetics", "vggsound": "vggsound",
    }
    assert set(LAYOUTS) == {"folder", "kinetics", "ucf101", "hmdb51", "vggsound"}


# ------------------------------------------------------------------------------------------------ folder


def test_folder_layout(tmp_path):
    layout = get_layout("folder", tmp_path, None)
    cases = {
        "loose.mp4": (None, None),
        "dog/a.mp4": ("dog", None),
        "train/dog/a.mp4": ("dog", "train"),
        "data/Validation/cat/b.mp4": ("cat", "val"),
        "val/cat/c.mp4": ("cat", "val"),
        "cat/test/d.mp4": ("cat", "test"),  # a split folder below the class folder
        "test/e.mp4": (None, "test"),
        "trains/f.mp4": ("trains", None),  # only whole folder names count
    }
    for rel, (label, split) in cases.items():
        assert layout.annotate(_touch(tmp_path, rel)) == {"label": label, "split": split, "extra": {}}, rel
    # The root's own name (or its ancestors') never counts, even when it is a split name.
    inner = tmp_path / "test"
    assert get_layout("folder", inner, None).annotate(inner / "e.mp4") == {"label": None, "split": None, "extra": {}}
    with pytest.raises(UsageError, match="folder layout takes no --layout-meta"):
        get_layout("folder", tmp_path, K400_MAP if K400_MAP.exists() else tmp_path)


# ---------------------------------------------------------------------------------------------- kinetics


@needs_splits
def test_kinetics_label_map_and_youtube_ids(tmp_path):
    layout = get_layout("kinetics", tmp_path, K400_MAP)
    # An 11-character id holding both '_' and '-', parsed from the right.
    a = layout.annotate(_touch(tmp_path, "train/air_drumming/-a_b-C_d9Xz_000012_000022.mp4"))
    assert a == {
        "label": "air drumming",
        "split": "train",
        "extra": {"youtube_id": "-a_b-C_d9Xz", "start_s": 12, "end_s": 22, "class_index": 1},
    }
    b = layout.annotate(_touch(tmp_path, "validate/abseiling/0wR5jVB-WPk_000417_000427.mp4"))
    assert (b["label"], b["split"], b["extra"]["class_index"], b["extra"]["youtube_id"]) == (
        "abseiling", "val", 0, "0wR5jVB-WPk"
    )
    # Punctuation that downloaders drop or keep still finds the class; line 209 of the map → index 208.
    for folder in ("passing_American_football_(in_game)", "passing american football in game"):
        c = layout.annotate(_touch(tmp_path, f"val/{folder}/x.mp4"))
        assert (c["label"], c["extra"]) == ("passing American football (in game)", {"class_index": 208})
    d = layout.annotate(_touch(tmp_path, "test/massaging_person's_head/abcdefghijk_000001_000011.mp4"))
    assert (d["label"], d["split"], d["extra"]["class_index"]) == ("massaging person's head", "test", 196)
    # Not in the map: no label, and the folder kept for the user to see.
    e = layout.annotate(_touch(tmp_path, "train/air_guitar_solo/short_name.mp4"))
    assert e == {"label": None, "split": "train", "extra": {"unknown_label": "air_guitar_solo"}}
    # Without a split folder; a file name that is not `<ytid>_<start>_<end>` gives no id.
    f = layout.annotate(_touch(tmp_path, "zumba/clip_1_2.mp4"))
    assert f == {"label": "zumba", "split": None, "extra": {"class_index": 399}}


def test_kinetics_without_label_map(tmp_path):
    layout = get_layout("kinetics", tmp_path, None)
    out = layout.annotate(_touch(tmp_path, "validation/some_new_class/ABCDEFGHIJK_000000_000010.mp4"))
    assert out == {
        "label": "some new class",
        "split": "val",
        "extra": {"youtube_id": "ABCDEFGHIJK", "start_s": 0, "end_s": 10},
    }


# ------------------------------------------------------------------------------------------------ UCF101


def _list_entries(name: str) -> list[str]:
    """Entries of an official list, read here independently of the layout (CRLF, `Class/v_x.avi [index]`)."""
    return [line.split()[0] for line in (UCF_LISTS / name).read_text().splitlines() if line.strip()]


@needs_splits
def test_ucf101_hand_checked_examples(tmp_path):
    layout = get_layout("ucf101", tmp_path, UCF_LISTS)
    # trainlist01 line 1, testlist02 line 1, trainlist03 line 45 (checked by hand in the files).
    out = layout.annotate(_touch(tmp_path, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"))
    assert out == {
        "label": "ApplyEyeMakeup",
        "split": "train",
        "extra": {"group": 8, "clip": 1, "class_index": 0, "splits": {"1": "train", "2": "test", "3": "train"}},
    }
    # File names say "HandStandPushups", the folder and classInd "HandstandPushups" (index 37 → 36):
    # testlist01 and trainlist02/03 list g01_c01.
    hs = layout.annotate(_touch(tmp_path, "HandstandPushups/v_HandStandPushups_g01_c01.avi"))
    assert hs["label"] == "HandstandPushups" and hs["split"] == "test"
    splits = {"1": "test", "2": "train", "3": "train"}
    assert hs["extra"] == {"group": 1, "clip": 1, "class_index": 36, "splits": splits}
    # Flat files: the class comes from the lists; a transcoded copy (.mp4, other case) still matches.
    flat = layout.annotate(_touch(tmp_path, "flat/V_YOYO_G25_C05.mp4"))
    assert (flat["label"], flat["split"], flat["extra"]["class_index"]) == ("YoYo", "train", 100)
    # A video in no list: label from the name, no split.
    extra = layout.annotate(_touch(tmp_path, "Archery/v_Archery_g99_c01.avi"))
    assert extra == {"label": "Archery", "split": None, "extra": {"group": 99, "clip": 1, "class_index": 2}}
    stray = layout.annotate(_touch(tmp_path, "Unrelated/movie.avi"))
    assert stray == {"label": None, "split": None, "extra": {"unknown_label": "Unrelated"}}


@needs_splits
def test_ucf101_split1_counts_and_groups_never_straddle(tmp_path):
    layout = get_layout("ucf101", tmp_path, UCF_LISTS)
    entries = _list_entries("trainlist01.txt") + _list_entries("testlist01.txt")
    assert len(entries) == 13320
    counts: Counter = Counter()
    groups: dict[str, set] = {"train": set(), "test": set()}
    for entry in entries:
        out = layout.annotate(_touch(tmp_path, entry))
        counts[out["split"]] += 1
        assert out["label"] == entry.split("/")[0]
        groups[out["split"]].add((out["label"], out["extra"]["group"]))
    assert counts == {"train": 9537, "test": 3783}
    assert groups["train"].isdisjoint(groups["test"])
    assert len(groups["train"] | groups["test"]) == 101 * 25


@needs_splits
def test_ucf101_finds_its_lists_or_says_how(tmp_path):
    inside = tmp_path / "UCF-101"
    shutil.copytree(UCF_LISTS, inside / "ucfTrainTestlist")
    assert get_layout("ucf101", inside, None).meta == inside / "ucfTrainTestlist"
    beside = tmp_path / "b" / "UCF-101"
    beside.mkdir(parents=True)
    shutil.copytree(UCF_LISTS, tmp_path / "b" / "ucfTrainTestlist")
    layout = get_layout("ucf101", beside, None)
    assert layout.annotate(beside / "ApplyLipstick" / "v_ApplyLipstick_g01_c01.avi")["split"] == "test"
    lonely = tmp_path / "c" / "UCF-101"
    lonely.mkdir(parents=True)
    with pytest.raises(UsageError, match=r"UCF-101: no ucfTrainTestlist folder .*pass --layout-meta"):
        get_layout("ucf101", lonely, None)
    with pytest.raises(UsageError, match=r"not the ucf101 'ucfTrainTestlist' folder .*--layout-meta"):
        get_layout("ucf101", lonely, lonely)


# ------------------------------------------------------------------------------------------------ HMDB51


@needs_splits
def test_hmdb51_flags_across_splits(tmp_path):
    layout = get_layout("hmdb51", tmp_path, HMDB_SPLITS)
    # brush_hair_test_split{1,2,3}.txt: "... 1", "... 1", "... 2".
    a = layout.annotate(_touch(tmp_path, "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi"))
    splits = {"1": "train", "2": "train", "3": "test"}
    assert a == {"label": "brush_hair", "split": "train", "extra": {"splits": splits}}
    # Flags 0, 0, 1: unused in splits 1 and 2; the split column says so rather than guessing.
    aussie = "Aussie_Brunette_Brushing_Hair_II_brush_hair_u_nm_np1_ba_goo_4.AVI"  # upper-case suffix
    b = layout.annotate(_touch(tmp_path, f"brush_hair/{aussie}"))
    assert b["split"] == "unused" and b["extra"]["splits"] == {"1": "unused", "2": "unused", "3": "train"}
    # Flat files get the class from the split file's name; punctuation-heavy names match exactly.
    odd = "Brushing_Her_Hair__[_NEW_AUDIO_]_UPDATED!!!!_brush_hair_h_cm_np1_le_goo_3.avi"
    c = layout.annotate(_touch(tmp_path, f"all/{odd}"))
    assert c["label"] == "brush_hair" and c["extra"]["splits"]["1"] == "unused"
    # Unknown video: label from a known class folder, no split.
    d = layout.annotate(_touch(tmp_path, "wave/my_own_clip.avi"))
    assert d == {"label": "wave", "split": None, "extra": {}}
    e = layout.annotate(_touch(tmp_path, "juggle/x.avi"))
    assert e == {"label": None, "split": None, "extra": {"unknown_label": "juggle"}}


@needs_splits
def test_hmdb51_split_sizes(tmp_path):
    layout = get_layout("hmdb51", tmp_path, HMDB_SPLITS)
    assert len(layout.splits) == 6766 and len(layout.class_names) == 51
    for split in "123":
        counts = Counter(flags[split] for flags in layout.splits.values())
        assert counts == {"train": 3570, "test": 1530, "unused": 1666}


# ---------------------------------------------------------------------------------------------- VGG-Sound


@needs_splits
def test_vggsound_official_test_csv(tmp_path):
    layout = get_layout("vggsound", tmp_path, VGG_TEST)
    assert len(layout.rows) == 15446
    # test.csv line 1, and a quoted label with a comma whose id holds '_' and '-'.
    a = layout.annotate(_touch(tmp_path, "video/glLQrEijrKg_000300.mp4"))
    assert (a["label"], a["split"]) == ("playing hammond organ", "test")
    assert a["extra"] == {"youtube_id": "glLQrEijrKg", "start_s": 300}
    b = layout.annotate(_touch(tmp_path, "a/b/0_8-g2rof7E_000049.mp4"))
    assert (b["label"], b["split"]) == ("heart sounds, heartbeat", "test")
    assert b["extra"] == {"youtube_id": "0_8-g2rof7E", "start_s": 49}
    # Same video, another start: not in the CSV.
    c = layout.annotate(_touch(tmp_path, "0_8-g2rof7E_000050.mp4"))
    assert c == {"label": None, "split": None, "extra": {"youtube_id": "0_8-g2rof7E", "start_s": 50}}
    assert layout.annotate(_touch(tmp_path, "readme.mp4")) == {"label": None, "split": None, "extra": {}}


def test_vggsound_full_csv_format(tmp_path):
    meta = tmp_path / "vggsound.csv"
    meta.write_text(
        '---g-f_I2yQ,1,people marching,test\r\n'
        '-_2yE4P9ZWk,30,"dog barking, growling",train\r\n'
        'abcdefghijk,250,playing piano,train\r\n'
    )
    layout = get_layout("vggsound", tmp_path / "clips", meta)
    assert layout.annotate(tmp_path / "clips" / "---g-f_I2yQ_000001.mp4")["split"] == "test"
    out = layout.annotate(tmp_path / "clips" / "-_2yE4P9ZWk_000030.mp4")
    assert (out["label"], out["split"]) == ("dog barking, growling", "train")
    assert out["extra"] == {"youtube_id": "-_2yE4P9ZWk", "start_s": 30}
    # Some downloaders append the end time; the start still finds the row.
    assert layout.annotate(tmp_path / "abcdefghijk_000250_000260.mp4")["label"] == "playing piano"


def test_vggsound_bad_csv_names_the_line(tmp_path):
    meta = tmp_path / "labels.csv"
    meta.write_text("youtube_id,start_seconds,label,split\nabcdefghijk,1,x,train\nnot a row\n")
    with pytest.raises(UsageError, match=r"labels\.csv:3: expected 'youtube_id,start_seconds,label,split'"):
        get_layout("vggsound", tmp_path, meta)
