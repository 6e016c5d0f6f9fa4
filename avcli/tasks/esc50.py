"""ESC-50: 2000 five-second environmental recordings, 50 classes, five official folds (`meta/esc50.csv`:
filename,fold,target,category,...). Fold k: test on fold k, train on the other four; the protocol reports the
mean over the folds (`--splits all`). Audio SVM protocol with C = 10.

Data root: the ESC-50 repository as published (`<root>/audio/*.wav`, `<root>/meta/esc50.csv`); the CSV may
also sit in the root or be given with --task-meta. Class indices are the CSV's `target`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from avcli.errors import UsageError
from avcli.tasks.base import Task, TaskVideo, with_memberships
from avcli.tasks.files import AUDIO_EXTENSIONS, by_stem, check_present, fold_memberships, media_files, require_folder

LAYOUT = "<root>/audio/*.wav and <root>/meta/esc50.csv (the ESC-50 repository)"
COLUMNS = ("filename", "fold", "target", "category")


def load_esc50(root: Path, meta: Path | None = None, allow_missing: bool = False) -> Task:
    root = require_folder(root, "ESC-50", LAYOUT)
    table = _find_csv(root, meta)
    rows = _read_rows(table)
    folds = sorted({row["fold"] for row in rows}, key=int)
    classes = [""] * (max(int(row["target"]) for row in rows) + 1)
    for row in rows:
        classes[int(row["target"])] = row["category"]
    files = by_stem(media_files(root, AUDIO_EXTENSIONS))
    missing = [f"audio/{row['filename']}" for row in rows if Path(row["filename"]).stem.lower() not in files]
    n_missing = check_present("ESC-50", root, [row["filename"] for row in rows], missing, str(table), allow_missing)
    videos = []
    for row in rows:
        path = files.get(Path(row["filename"]).stem.lower())
        if path is not None:
            splits = fold_memberships(row["fold"], len(folds))
            videos.append(TaskVideo(str(path), int(row["target"]), "", splits=splits))
    return with_memberships("esc50", classes, videos, tuple(folds), audio_only=True, svm_c=10.0, n_missing=n_missing)


def _find_csv(root: Path, meta: Path | None) -> Path:
    candidates = [meta, meta / "esc50.csv"] if meta is not None else [root / "meta" / "esc50.csv", root / "esc50.csv"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UsageError(f"{root}: no meta/esc50.csv; unpack the ESC-50 repository there or pass --task-meta esc50.csv")


def _read_rows(table: Path) -> list[dict]:
    with open(table, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not set(COLUMNS) <= set(reader.fieldnames or ()):
            raise UsageError(f"{table}: expected the columns {','.join(COLUMNS)}; pass the official meta/esc50.csv")
        rows = list(reader)
    for number, row in enumerate(rows, 2):
        if not (row["fold"].isdigit() and row["target"].isdigit()):
            raise UsageError(f"{table}:{number}: fold and target must be numbers, got {row['fold']!r}, {row['target']!r}")
    return rows
