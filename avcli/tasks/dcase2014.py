"""DCASE2014 acoustic scene classification (the D-CASE scene task used by SoundNet and AVID): 10 scenes,
10 thirty-second recordings per scene in the development set and 10 in the test set, named `<scene><NN>.wav`.
Audio SVM protocol with C = 1.

Data root: the development set in a `train/` (or `development/`, `scenes_stereo/`) folder and the test set in a
`test/` (or `evaluation/`, `scenes_stereo_testset/`) folder; the label is the file name without its number.
"""

from __future__ import annotations

import re
from pathlib import Path

from avcli.errors import UsageError
from avcli.tasks.base import Task, TaskVideo
from avcli.tasks.files import AUDIO_EXTENSIONS, check_present, media_files, require_folder

LAYOUT = "<root>/train/<scene><NN>.wav and <root>/test/<scene><NN>.wav"
CLASSES = ["bus", "busystreet", "office", "openairmarket", "park", "quietstreet", "restaurant", "supermarket",
           "tube", "tubestation"]
PER_CLASS = 10
SPLIT_FOLDERS = {"train": "train", "development": "train", "dev": "train", "scenes_stereo": "train",
                 "test": "test", "evaluation": "test", "eval": "test", "scenes_stereo_testset": "test"}
_NAME = re.compile(r"^(?P<scene>[a-z]+)(?P<number>\d+)$")


def load_dcase2014(root: Path, meta: Path | None = None, allow_missing: bool = False) -> Task:
    root = require_folder(root, "DCASE2014", LAYOUT)
    found: dict[tuple[str, str], Path] = {}
    for path in media_files(root, AUDIO_EXTENSIONS):
        split = next((SPLIT_FOLDERS[p.lower()] for p in reversed(path.relative_to(root).parts[:-1])
                      if p.lower() in SPLIT_FOLDERS), None)
        name = _NAME.match(path.stem.lower())
        if split is None or name is None:
            continue
        if name["scene"] not in CLASSES:
            raise UsageError(f"{path}: unknown scene {name['scene']!r}; DCASE2014 scenes are {', '.join(CLASSES)}")
        found[(split, f"{name['scene']}{int(name['number']):02d}")] = path
    listed = [(split, f"{scene}{n:02d}") for split in ("train", "test") for scene in CLASSES
              for n in range(1, PER_CLASS + 1)]
    missing = [f"{split}/{name}.wav" for split, name in listed if (split, name) not in found]
    n_missing = check_present("DCASE2014", root, [f"{s}/{n}" for s, n in listed], missing,
                              "the DCASE2014 scene list (10 per scene and split)", allow_missing)
    videos = [TaskVideo(str(found[key]), CLASSES.index(_NAME.match(key[1])["scene"]), key[0])
              for key in listed if key in found]
    return Task("dcase2014", list(CLASSES), videos, audio_only=True, svm_c=1.0, n_missing=n_missing)
