"""Feature extraction memory as the dataset grows: flat with the features going to disk in shards, growing with
them held in memory.

An ESC-50-like audio task: generated 1.5 s sweeps (16 files, cycled over), each shorter than the 2 s window, so one
padded window whose features fill the plan's 10 slots (even10, the audio test plan); the quickstart's encoders;
the SVM protocol's features (audio conv2x–conv5x pooled: 8,704 floats a clip, 348 KB a recording). Extracted for
N and scale×N recordings, each run in a process of its own, one thread:
  - sharded: into a feature cache, shards of --shard-mb written as they are made (what `avcli probe` does), then
    read back once through `.chunks()` (what the torch classifiers do);
  - in memory: the same extraction without a cache (`--no-cache`), the reference.
Peak resident memory is the process's ru_maxrss; `baseline` is its level after loading the encoders and a warm-up
extraction of 32 recordings. Prints one JSON line: each run's peak, the ratio scale×N / N for both, and the
features' size.

    python benchmarks/feature_extraction_memory.py [--recordings 300] [--scale 4] [--shard-mb 16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SWEEPS = 16
RATE = 16000


def write_sweeps(folder: Path) -> list[Path]:
    """16-bit mono WAV sweeps, 1.5 s each, no two alike (their features differ)."""
    paths = []
    for k in range(SWEEPS):
        path = folder / f"sweep_{k:02d}.wav"
        if not path.exists():
            t = np.arange(int(1.5 * RATE)) / RATE
            f0, f1 = 200 + 50 * k, 4000 - 150 * k
            signal = (0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / 3.0)) * 32767).astype(np.int16)
            with wave.open(str(path), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(RATE)
                out.writeframes(signal.tobytes())
        paths.append(path)
    return paths


def peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def child(mode: str, count: int, workdir: Path, shard_mb: float) -> None:
    """One extraction in this process; prints its figures as JSON."""
    os.environ["AVCLI_FEATURE_SHARD_MB"] = str(shard_mb)
    import torch

    from avcli.evaluate.clip_features import AUDIO_LAYERS, extract_clip_features
    from avcli.evaluate.clip_sampling import ClipPlan
    from avcli.evaluate.encoders import load_eval_encoders
    from avcli.evaluate.feature_cache import FeatureCache
    from avcli.tasks.base import TaskVideo

    torch.set_num_threads(1)
    encoders = load_eval_encoders("random", REPO / "recipes" / "quickstart.yaml")
    encoders.frontend.fitted.fill_(True)  # statistics do not change the cost
    sources = write_sweeps(workdir)
    videos = [TaskVideo(str(sources[i % len(sources)]), i % 2, "test") for i in range(count)]
    names = set(AUDIO_LAYERS)

    def extract(items, into=None):
        return extract_clip_features(encoders, items, ClipPlan("even", 10), names, torch.device("cpu"),
                                     audio_task=True, audio_seconds=2.0, into=into)
    extract(videos[:32])  # warm-up: the allocator and the model's first buffers belong to the baseline
    baseline = peak_mib()
    started = time.perf_counter()
    if mode == "sharded":
        folder = workdir / f"cache-{count}"
        shutil.rmtree(folder, ignore_errors=True)
        found = extract(videos, FeatureCache(folder, {"benchmark": count}).writer("bench", names, {}))
        checksum = sum(float(chunk.double().sum()) for feature in found.values() for chunk in feature.chunks())
        shards = sum(len(feature.shards) for feature in found.values())
        shutil.rmtree(folder, ignore_errors=True)
    else:
        found = extract(videos)
        # in blocks: a float64 copy of a whole feature would count against the in-memory path
        checksum = sum(float(feature[lo : lo + 32].double().sum()) for feature in found.values()
                       for lo in range(0, feature.shape[0], 32))
        shards = 0
    features = sum(int(np.prod(feature.shape)) * 4 for feature in found.values())
    print(json.dumps({"peak_mib": peak_mib(), "baseline_mib": baseline, "feature_mib": round(features / 2**20, 1),
                      "seconds": round(time.perf_counter() - started, 1), "shards": shards,
                      "checksum": round(checksum, 3)}))


def run_child(mode: str, count: int, workdir: Path, shard_mb: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--recordings", str(count), "--workdir",
                          str(workdir), "--shard-mb", str(shard_mb)], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    if out.returncode != 0:
        raise SystemExit(f"{mode} extraction of {count} recordings failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=300, help="N: recordings of the 1× run")
    parser.add_argument("--scale", type=int, default=4, help="the larger run has scale×N recordings")
    parser.add_argument("--shard-mb", type=float, default=16.0, help="shard size (AVCLI_FEATURE_SHARD_MB)")
    parser.add_argument("--workdir", type=Path, help="keep the generated recordings here (reused)")
    parser.add_argument("--child", choices=("sharded", "memory"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.recordings, args.workdir, args.shard_mb)
        return
    report: dict = {"benchmark": "feature_extraction_memory", "task": "audio, 1.5 s sweeps, even10, 2 s window",
                    "features": "audio conv2x-conv5x pooled (SVM protocol), quickstart encoders",
                    "shard_mb": args.shard_mb}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        write_sweeps(workdir)
        sizes = {"1x": args.recordings, f"{args.scale}x": args.scale * args.recordings}
        runs = {mode: {size: run_child(mode, count, workdir, args.shard_mb) for size, count in sizes.items()}
                for mode in ("sharded", "memory")}
    for size in sizes:  # the same features both ways (summed in another order: equal to float64 rounding)
        a, b = runs["sharded"][size]["checksum"], runs["memory"][size]["checksum"]
        if abs(a - b) > 1e-9 * max(abs(a), abs(b), 1.0):
            raise SystemExit(f"{size}: the sharded features (sum {a}) are not those extracted in memory (sum {b})")
    for mode, by_size in runs.items():
        small, large = by_size.values()
        report[mode] = {size: {k: v for k, v in run.items() if k != "checksum"} for size, run in by_size.items()}
        report[mode]["peak_ratio"] = round(large["peak_mib"] / small["peak_mib"], 2)
        report[mode]["above_baseline_mib"] = [round(r["peak_mib"] - r["baseline_mib"], 1) for r in by_size.values()]
    report["recordings"] = sizes
    print(json.dumps(report))


if __name__ == "__main__":
    main()
