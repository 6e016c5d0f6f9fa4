"""Audio probes on short recordings: linear-probe top-1 of a random-init audio encoder for each padding of a
recording shorter than the window (`--audio-padding` centre / start / tile / none), beside a reference measured in
the same run: one spectrogram of each whole recording (no window, no padding) through the same random-init
encoder, statistics fitted on every train recording, logistic regression on the standardised features.

Data: spoken digits generated with espeak-ng (avcli.tasks.spoken_digits; 0.25-0.9 s, split by voice: 900 train,
360 test, or the test suite's 200/80 with --small), and the real sonic-pi set (165 FLAC files, 0.02-10.7 s,
five generated stratified folds, the mean over folds) when ../shared/data is beside the repository.
Prints one JSON line: {"digits": {padding: top1, ..., "reference": top1}, "sonic_pi": {...}, ...}.

    python benchmarks/short_audio.py [--recipe recipes/xid.yaml] [--small] [--no-sonic] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from avcli.evaluate.classifiers import LogisticProbe, averaged_top1
from avcli.evaluate.clip_sampling import AUDIO_PADDINGS, standard_sampling
from avcli.evaluate.encoders import load_eval_encoders
from avcli.evaluate import probe as probe_module
from avcli.evaluate.probe import ProbeSettings, probe_split
from avcli.media.clip_reader import ClipReader
from avcli.tasks import load_task
from avcli.tasks.spoken_digits import SMALL, generate_spoken_digits

REPO = Path(__file__).resolve().parents[1]
SONIC_PI = REPO.parent / "shared" / "data" / "audio_sonic_pi" / "samples"
CPU = torch.device("cpu")


def sonic_table(folder: Path) -> Path:
    """The sonic-pi samples as a `csv` task (label = the file-name prefix), no split column: five folds."""
    table = folder / "sonic.csv"
    files = sorted(SONIC_PI.glob("*.flac"))
    table.write_text("path,label\n" + "".join(f"{p},{p.name.split('_')[0]}\n" for p in files))
    return table


def probe_top1(recipe: Path, table: Path, padding: str, overrides: list[str]) -> float:
    """The mean top-1 over the task's splits of `avcli probe --checkpoint random --audio-padding PADDING`."""
    task = load_task("csv", table)
    encoders = load_eval_encoders("random", recipe, overrides)
    settings = ProbeSettings("linear", standard_sampling(True, padding=padding))
    tops = [probe_split(encoders, task.select(split), ("audio",), settings, CPU)[0]["top1"]
            for split in task.split_ids]
    return round(statistics.mean(tops), 2)


@torch.no_grad()
def reference_top1(recipe: Path, table: Path, overrides: list[str], min_seconds: float = 0.1) -> float:
    """One spectrogram per whole recording (centred in `min_seconds` of zeros when shorter), the frontend's
    statistics fitted on all of a split's train recordings, the pooled feature, logistic regression."""
    task = load_task("csv", table)
    encoders = load_eval_encoders("random", recipe, overrides)
    rate = encoders.recipe.data.clip.sample_rate
    waves = {}
    for video in task.videos:
        with ClipReader(video.media, audio_only=True) as reader:
            wave = reader.read_audio(0.0, reader.duration_s, rate)
        short = int(min_seconds * rate) - wave.numel()
        waves[video.path] = torch.nn.functional.pad(wave, (short // 2, short - short // 2)) if short > 0 else wave
    tops = []
    for split in task.split_ids:
        selected = task.select(split)
        train, test = selected.split("train"), selected.split("test")
        encoders.frontend.fit([waves[v.path] for v in train])
        features = {path: encoders.model.audio(encoders.frontend(wave[None]))[0] for path, wave in waves.items()}
        probe = LogisticProbe(1.0).fit(torch.stack([features[v.path] for v in train])[:, None],
                                       [v.label for v in train])
        tops.append(averaged_top1(probe, torch.stack([features[v.path] for v in test])[:, None],
                                  [v.label for v in test]))
    return round(statistics.mean(tops), 2)


def measure(recipe: Path, table: Path, paddings: list[str], overrides: list[str],
            reference: bool = True) -> tuple[dict, dict]:
    found, seconds = {}, {}
    for padding in paddings:
        started = time.perf_counter()
        found[padding] = probe_top1(recipe, table, padding, overrides)
        seconds[padding] = round(time.perf_counter() - started, 1)
    if reference:
        started = time.perf_counter()
        found["reference"] = reference_top1(recipe, table, overrides)
        seconds["reference"] = round(time.perf_counter() - started, 1)
    return found, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "xid.yaml",
                        help="the random-init encoder's architecture (default: AVID's Conv2D-10)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=V",
                        help="recipe override, e.g. data.audio.kind=log_mel (repeatable)")
    parser.add_argument("--paddings", default=",".join(AUDIO_PADDINGS))
    parser.add_argument("--small", action="store_true", help="the test suite's digits (200 train, 80 test)")
    parser.add_argument("--digits", type=Path, help="an already generated spoken_digits.csv")
    parser.add_argument("--no-digits", action="store_true")
    parser.add_argument("--no-sonic", action="store_true")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--stats-recordings", type=int, default=probe_module.STATS_RECORDINGS,
                        help="recordings the random-init frontend's statistics are fitted on")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    probe_module.STATS_RECORDINGS = args.stats_recordings
    paddings = [p for p in args.paddings.split(",") if p]
    out: dict = {"benchmark": "short_audio", "recipe": str(args.recipe), "overrides": args.overrides,
                 "protocol": "linear", "window_s": 2.0, "stats_recordings": args.stats_recordings}
    encoders = load_eval_encoders("random", args.recipe, args.overrides)
    out["architecture"] = encoders.architecture("audio")
    with tempfile.TemporaryDirectory() as scratch:
        work = args.workdir or Path(scratch)
        if not args.no_digits:
            table = args.digits or generate_spoken_digits(work / "digits", **(SMALL if args.small else {}))
            out["digits"], out["digits_seconds"] = measure(args.recipe, table, paddings, args.overrides,
                                                           not args.no_reference)
        if not args.no_sonic and SONIC_PI.exists():
            out["sonic_pi"], out["sonic_pi_seconds"] = measure(args.recipe, sonic_table(Path(work)), paddings,
                                                               args.overrides, not args.no_reference)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
