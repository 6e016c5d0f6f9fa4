"""Dataset layouts: label, split and dataset-specific fields of a file, from its path and the official metadata.

`get_layout(name, root, meta)` returns a small strategy object; `layout.annotate(path)` gives
`{"label", "split", "extra"}` for one file under `root`. Metadata files are parsed once, into dicts keyed by
lower-cased file stem, so annotating is a few dict look-ups per file (datasets have 10^5-10^6 files), and the
media files themselves are never opened. Formats: /work/shared/data/README.md → splits/ (the official files).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from avcli.errors import UsageError

# Split folder names, compared case-insensitively.
SPLIT_FOLDERS = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}
_KINETICS_NAME = re.compile(r"^(?P<ytid>[\w-]{11})_(?P<start>\d{6,})_(?P<end>\d{6,})$")
_VGGSOUND_NAME = re.compile(r"^(?P<ytid>[\w-]{11})_(?P<start>\d+)(?:_(?P<end>\d+))?$")
_VGGSOUND_LOOSE = re.compile(r"^(?P<ytid>.+)_(?P<start>\d+)$")  # ids that are not the usual 11 characters
_UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$", re.IGNORECASE)


def _lines(path: Path) -> list[str]:
    """Lines without CR/LF or surrounding blanks (the official files mix CRLF and trailing spaces)."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return [line.strip() for line in fh.read().splitlines()]
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror}); check --layout-meta") from None


class Layout:
    """Base: `root`, `meta`, and the path of a file relative to the root as folder names + stem."""

    name = ""

    def __init__(self, root: Path, meta: Path | None = None):
        self.root = Path(root)
        self.meta = Path(meta) if meta is not None else None

    def annotate(self, path: Path) -> dict:
        raise NotImplementedError

    def folders(self, path: Path) -> tuple[str, ...]:
        """Folder names between the root and the file; () for a file in the root or outside it."""
        path = Path(path)
        as_given = (Path(os.path.abspath(path)), Path(os.path.abspath(self.root)))
        for p, r in (as_given, (path.resolve(), self.root.resolve())):  # symlinked roots: try resolved paths too
            try:
                return p.relative_to(r).parts[:-1]
            except ValueError:
                pass
        return ()

    @staticmethod
    def split_of(folders: tuple[str, ...]) -> str | None:
        for folder in reversed(folders):
            if folder.lower() in SPLIT_FOLDERS:
                return SPLIT_FOLDERS[folder.lower()]
        return None

    @staticmethod
    def class_folder(folders: tuple[str, ...]) -> str | None:
        """The nearest folder that is not a split folder (`train/cat/x.mp4` and `cat/train/x.mp4` → 'cat')."""
        for folder in reversed(folders):
            if folder.lower() not in SPLIT_FOLDERS:
                return folder
        return None

    def _find_meta(self, folder_name: str, marker: str) -> Path:
        """`meta` if given, else `root/<folder_name>` or `root/../<folder_name>`; it must contain `marker`."""
        candidates = [self.meta, self.meta / folder_name] if self.meta else [
            self.root / folder_name, self.root.parent / folder_name
        ]
        for candidate in candidates:
            if (candidate / marker).is_file() or (marker.startswith("*") and any(candidate.glob(marker))):
                return candidate
        if self.meta:
            raise UsageError(f"{self.meta}: not the {self.name} '{folder_name}' folder (no {marker} in it); "
                             f"pass --layout-meta the folder of the official split files")
        raise UsageError(f"{self.root}: no {folder_name} folder in or beside the dataset root; "
                         f"pass --layout-meta the folder of the official {self.name} split files")


class FolderLayout(Layout):
    """label = the nearest non-split folder above the file; split = a train/val/validation/test folder."""

    name = "folder"

    def __init__(self, root: Path, meta: Path | None = None):
        if meta is not None:
            raise UsageError(f"{meta}: the folder layout takes no --layout-meta; labels come from folder names")
        super().__init__(root)

    def annotate(self, path: Path) -> dict:
        folders = self.folders(path)
        return {"label": self.class_folder(folders), "split": self.split_of(folders), "extra": {}}


class KineticsLayout(Layout):
    """`root/[split/]<class>/<ytid>_<start:06d>_<end:06d>.mp4`; meta = optional label map, one class a line."""

    name = "kinetics"

    def __init__(self, root: Path, meta: Path | None = None):
        super().__init__(root, meta)
        self.classes: dict[str, tuple[str, int]] | None = None
        if self.meta is not None:
            names = [line for line in _lines(self.meta) if line]
            if not names:
                raise UsageError(f"{self.meta}: empty label map; pass --layout-meta a file with one class a line")
            # Folder names drop or mangle punctuation ("passing_American_football_(in_game)",
            # "massaging_persons_head"), so classes are also found by their letters and digits alone.
            self.classes = {}
            for index, label in enumerate(names):
                self.classes.setdefault(label, (label, index))
                self.classes.setdefault(_squash(label), (label, index))

    def annotate(self, path: Path) -> dict:
        path = Path(path)
        folders = self.folders(path)
        extra: dict = {}
        match = _KINETICS_NAME.match(path.stem)
        if match:
            extra.update(youtube_id=match["ytid"], start_s=int(match["start"]), end_s=int(match["end"]))
        folder = self.class_folder(folders)
        label = folder.replace("_", " ").strip() if folder else None
        if label is not None and self.classes is not None:
            known = self.classes.get(label) or self.classes.get(_squash(label))
            if known is None:
                extra["unknown_label"] = folder
                label = None
            else:
                label, extra["class_index"] = known
        return {"label": label, "split": self.split_of(folders), "extra": extra}


def _squash(label: str) -> str:
    return "".join(ch for ch in label.lower() if ch.isalnum())


class UCF101Layout(Layout):
    """`root/<Class>/v_<Class>_gXX_cYY.avi` (or flat); meta = the `ucfTrainTestlist` folder."""

    name = "ucf101"

    def __init__(self, root: Path, meta: Path | None = None):
        super().__init__(root, meta)
        folder = self._find_meta("ucfTrainTestlist", "classInd.txt")
        self.meta = folder
        self.classes: dict[str, tuple[str, int]] = {}  # lower-case name → (name, 0-based index)
        for number, line in enumerate(_lines(folder / "classInd.txt"), 1):
            if not line:
                continue
            try:
                index, label = line.split(None, 1)
                self.classes[label.lower()] = (label, int(index) - 1)
            except ValueError:
                where = f"{folder / 'classInd.txt'}:{number}"
                raise UsageError(f"{where}: expected '<index> <Class>', got {line!r}") from None
        self.splits: dict[str, dict[str, str]] = {}  # lower-case stem → {"1": "train", ...}
        self.listed_class: dict[str, str] = {}  # lower-case stem → class folder in the list
        self.entries: dict[str, str] = {}  # lower-case stem → the file as the list names it (Class/v_....avi)
        for list_file in sorted(folder.glob("*list0*.txt")):
            kind = "train" if list_file.name.lower().startswith("train") else "test"
            split = str(int(list_file.stem[-2:]))
            for line in _lines(list_file):
                if not line:
                    continue
                entry = line.split()[0].replace("\\", "/")
                stem = entry.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
                self.splits.setdefault(stem, {})[split] = kind
                self.entries.setdefault(stem, entry)
                if "/" in entry:
                    self.listed_class[stem] = entry.split("/")[0]

    def annotate(self, path: Path) -> dict:
        path = Path(path)
        stem = path.stem.lower()
        folders = self.folders(path)
        name = _UCF_NAME.match(path.stem)
        extra: dict = {}
        if name:
            extra.update(group=int(name["group"]), clip=int(name["clip"]))
        # The list's folder, then the file's folder, then the name (file names say "HandStandPushups" where the
        # class and its folder are "HandstandPushups": compare case-insensitively, report the classInd spelling).
        candidates = [self.listed_class.get(stem), self.class_folder(folders), name and name["cls"]]
        label = None
        for candidate in candidates:
            if candidate and candidate.lower() in self.classes:
                label, extra["class_index"] = self.classes[candidate.lower()]
                break
        else:
            unknown = next((c for c in candidates if c), None)
            if unknown:
                extra["unknown_label"] = unknown
        return _with_official_splits(label, self.splits.get(stem), extra)


def _with_official_splits(label: str | None, splits: dict | None, extra: dict) -> dict:
    """The annotation of a dataset with three official splits: all of them in `extra["splits"]`, split 1 in the
    `split` column."""
    if splits:
        extra["splits"] = dict(sorted(splits.items()))
    return {"label": label, "split": splits.get("1") if splits else None, "extra": extra}


class HMDB51Layout(Layout):
    """`root/<class>/<video>.avi` (or flat); meta = the `testTrainMulti_7030_splits` folder."""

    name = "hmdb51"
    FLAGS = {"0": "unused", "1": "train", "2": "test"}
    _SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$", re.IGNORECASE)

    def __init__(self, root: Path, meta: Path | None = None):
        super().__init__(root, meta)
        folder = self._find_meta("testTrainMulti_7030_splits", "*_test_split1.txt")
        self.meta = folder
        self.splits: dict[str, dict[str, str]] = {}  # lower-case stem → {"1": "train"|"test"|"unused", ...}
        self.classes: dict[str, str] = {}  # lower-case stem → class
        self.class_names: dict[str, str] = {}  # lower-case class → class, in the order of the split files
        self.entries: dict[str, str] = {}  # lower-case stem → <class>/<video>.avi
        for split_file in sorted(folder.glob("*_test_split*.txt")):
            match = self._SPLIT_FILE.match(split_file.name)
            if not match:
                continue
            label, split = match["cls"], str(int(match["split"]))
            self.class_names[label.lower()] = label
            for number, line in enumerate(_lines(split_file), 1):
                if not line:
                    continue
                parts = line.rsplit(None, 1)
                if len(parts) != 2 or parts[1] not in self.FLAGS:
                    raise UsageError(f"{split_file}:{number}: expected '<video>.avi <0|1|2>', got {line!r}")
                stem = parts[0].rsplit(".", 1)[0].lower()
                self.splits.setdefault(stem, {})[split] = self.FLAGS[parts[1]]
                self.classes[stem] = label
                self.entries.setdefault(stem, f"{label}/{parts[0]}")

    def annotate(self, path: Path) -> dict:
        path = Path(path)
        stem = path.stem.lower()
        extra: dict = {}
        label = self.classes.get(stem)
        if label is None:
            folder = self.class_folder(self.folders(path))
            label = self.class_names.get(folder.lower()) if folder else None
            if folder and label is None:
                extra["unknown_label"] = folder
        return _with_official_splits(label, self.splits.get(stem), extra)


class VGGSoundLayout(Layout):
    """`<ytid>_<start:06d>.mp4` anywhere under root; meta = `vggsound.csv` (full, headerless) or `test.csv`."""

    name = "vggsound"

    def __init__(self, root: Path, meta: Path | None = None):
        super().__init__(root, meta)
        self.rows: dict[tuple[str, int], tuple[str, str]] = {}  # (ytid, start) → (label, split)
        if self.meta is not None:
            self._load(self.meta)

    def _load(self, meta: Path) -> None:
        try:
            with open(meta, newline="", encoding="utf-8-sig") as fh:
                rows = list(enumerate(csv.reader(fh), 1))
        except OSError as exc:
            fix = "pass --layout-meta vggsound.csv or test.csv"
            raise UsageError(f"{meta}: cannot read ({exc.strerror}); {fix}") from None
        for number, cells in rows:
            cells = [cell.strip() for cell in cells]
            if not any(cells) or cells[0].startswith("#"):
                continue
            key = None
            if len(cells) >= 4 and cells[1].isdigit():  # vggsound.csv: youtube_id,start_seconds,label,split
                key, label, split = (cells[0], int(cells[1])), cells[2], cells[3].lower()
            elif len(cells) == 2 and (parsed := _vggsound_name(Path(cells[0]).stem)):  # test.csv
                key, label, split = (parsed[0], parsed[1]), cells[1], "test"
            if key is None:
                if number == 1:
                    continue  # a header row
                raise UsageError(
                    f"{meta}:{number}: expected 'youtube_id,start_seconds,label,split' or "
                    f"'<ytid>_<start:06d>.mp4,label', got {','.join(cells)!r}; pass the official VGG-Sound CSV"
                )
            self.rows[key] = (label, split)

    @staticmethod
    def key_of(path: Path) -> tuple[str, int] | None:
        """(youtube id, start second) from a clip's file name, the key of `rows`; None for other names."""
        return _vggsound_name(Path(path).stem)

    def annotate(self, path: Path) -> dict:
        parsed = _vggsound_name(Path(path).stem)
        if parsed is None:
            return {"label": None, "split": None, "extra": {}}
        ytid, start = parsed
        label, split = self.rows.get((ytid, start), (None, None))
        return {"label": label, "split": split, "extra": {"youtube_id": ytid, "start_s": start}}


def _vggsound_name(stem: str) -> tuple[str, int] | None:
    match = _VGGSOUND_NAME.match(stem) or _VGGSOUND_LOOSE.match(stem)
    return (match["ytid"], int(match["start"])) if match else None


LAYOUTS: dict[str, type[Layout]] = {
    cls.name: cls for cls in (FolderLayout, KineticsLayout, UCF101Layout, HMDB51Layout, VGGSoundLayout)
}


def get_layout(name: str, root: Path, meta: Path | None = None) -> Layout:
    """The layout called `name` for files under `root`, with its metadata parsed from `meta` (see each class)."""
    cls = LAYOUTS.get(name.lower())
    if cls is None:
        raise UsageError(f"unknown layout {name!r}; choose one of: {', '.join(LAYOUTS)}")
    if meta is not None and not Path(meta).exists():
        raise UsageError(f"{meta}: no such file or folder; pass --layout-meta an existing path")
    return cls(Path(root), Path(meta) if meta is not None else None)
