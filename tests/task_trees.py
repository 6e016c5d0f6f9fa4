"""Miniature UCF101 / HMDB51 / ESC-50 trees built from the official split files in ../shared/data/splits.

A handful of classes, a few files each, named as the official lists name them and generated with PyAV: each
class gets its own colour and tone, so any encoder's features separate the classes. The lists written beside
the media keep the official lines byte for byte (CRLF included), filtered to the chosen files.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from media_helpers import write_tone_audio, write_tone_video

SPLITS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "splits"
UCF_LISTS = SPLITS / "ucf101" / "ucfTrainTestlist"
HMDB_SPLITS = SPLITS / "hmdb51" / "testTrainMulti_7030_splits"
ESC_CSV = SPLITS / "esc50" / "esc50.csv"
needs_splits = pytest.mark.skipif(not SPLITS.exists(), reason="../shared/data/splits is not beside the repo")

COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (220, 200, 40)]
TONES = [330.0, 660.0, 1320.0, 2640.0]


def official_lines(path: Path) -> list[bytes]:
    """The file's lines with their own terminators (CRLF stays CRLF)."""
    return path.read_bytes().splitlines(keepends=True)


def _name(line: bytes) -> str:
    return line.decode().split()[0]


def build_ucf101(root: Path, classes=("ApplyEyeMakeup", "Basketball", "YoYo"), groups=(1, 8, 15, 22)) -> dict:
    """`root/<Class>/v_<Class>_gXX_c01.avi` for each class and group (groups 1-7 are the test set of split 1,
    8-14 of split 2, 15-21 of split 3; 22+ always train), and `root/ucfTrainTestlist/` with classInd.txt whole
    and the six lists filtered to those videos. Returns {entry (Class/v_....avi): class name}."""
    chosen = {}
    for cls_index, cls in enumerate(classes):
        for group in groups:
            entry = f"{cls}/v_{cls}_g{group:02d}_c01.avi"
            chosen[entry] = cls
            path = root / entry
            path.parent.mkdir(parents=True, exist_ok=True)
            write_tone_video(path, COLOURS[cls_index], TONES[cls_index], seconds=1.5 + 0.25 * (group % 3))
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_bytes((UCF_LISTS / "classInd.txt").read_bytes())
    for source in sorted(UCF_LISTS.glob("*list0*.txt")):
        kept = [line for line in official_lines(source) if line.strip() and _name(line) in chosen]
        (lists / source.name).write_bytes(b"".join(kept))
    return chosen


def build_hmdb51(root: Path, classes=("brush_hair", "kick", "wave"), per_flag: int = 2) -> dict:
    """`root/<class>/<video>.avi`: for each class, `per_flag` videos of each flag (0 unused, 1 train, 2 test) in
    split 1; the split folder `root/testTrainMulti_7030_splits` holds those classes' nine files filtered to the
    chosen videos, and class_list.txt (all 51 classes, the official order) beside it. Returns {video: class}."""
    chosen = {}
    for cls_index, cls in enumerate(classes):
        counts = {"0": 0, "1": 0, "2": 0}
        for line in official_lines(HMDB_SPLITS / f"{cls}_test_split1.txt"):
            if not line.strip():
                continue
            video, flag = line.decode().split()
            if counts[flag] < per_flag:
                counts[flag] += 1
                chosen[video] = cls
                (root / cls).mkdir(parents=True, exist_ok=True)
                write_tone_video(root / cls / video, COLOURS[cls_index], TONES[cls_index])
    folder = root / "testTrainMulti_7030_splits"
    folder.mkdir()
    for cls in classes:
        for split in (1, 2, 3):
            source = HMDB_SPLITS / f"{cls}_test_split{split}.txt"
            kept = [line for line in official_lines(source) if line.strip() and _name(line) in chosen]
            (folder / source.name).write_bytes(b"".join(kept))
    (root / "class_list.txt").write_bytes((SPLITS / "hmdb51" / "class_list.txt").read_bytes())
    return chosen


def build_esc50(root: Path, targets=(0, 14, 41), seconds: float = 1.0) -> list[dict]:
    """`root/audio/<filename>.wav`, one recording per (class, fold) for each of `targets`, and
    `root/meta/esc50.csv` with the official rows of those files. Returns the rows."""
    with open(ESC_CSV, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames
        rows, seen = [], set()
        for row in reader:
            key = (int(row["target"]), row["fold"])
            if key[0] in targets and key not in seen:
                seen.add(key)
                rows.append(row)
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    for row in rows:
        write_tone_audio(root / "audio" / row["filename"], TONES[targets.index(int(row["target"]))], seconds)
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return rows
