"""Do AVTS windows contain anything to synchronise? Bounce coverage of a recipe's sync pairs on the synthetic world.

    python benchmarks/sync_windows.py recipes/avts-tiny.yaml [a.b=v ...] [--batches 20]

The synthetic world records every bounce frame in world.json, and each bounce starts a sound. This draws the
recipe's own sync-pair batches (the sampler of `data.sampler`, at an epoch after the curriculum switch, so hard
negatives are included) and prints one JSON line: the world's bounce rate, and for the positives the fraction of
video windows holding at least one bounce, the mean number of bounces per video window, the same for the audio
window, and the reference a Poisson process at the world's mean rate would give for that video span (its ratio
to the measured coverage tells whether clips are simply too short for the bounce rate).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from avcli.data.catalog import Catalog
from avcli.data.samplers import build_sampler
from avcli.recipe import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, args.overrides)
    root = Path(recipe.data.catalog)
    world_file = root / "world.json"
    if not world_file.exists():
        raise SystemExit(f"{world_file} not found: this needs a catalog of the synthetic world (run pretrain once)")
    world = json.loads(world_file.read_text())
    fps = world["spec"]["fps"]
    with Catalog(root) as catalog:
        items = catalog.items(status="ok")
    bounces = [np.array(world["videos"][Path(item.path).stem]["bounce_frames"]) / fps for item in items]
    rate = float(np.mean([len(b) / (world["videos"][Path(i.path).stem]["frames"] / fps) for b, i in zip(bounces, items)]))

    clip = recipe.data.clip
    video_s, audio_s = clip.frames / clip.fps, clip.audio_seconds
    sampler = build_sampler(recipe.data, items, recipe.training.batch_size, recipe.training.seed)
    epoch = sampler.switch_epoch if getattr(sampler, "switch_epoch", None) is not None else 0
    in_video, in_audio = [], []
    for index in range(min(args.batches, len(sampler))):
        for spec in sampler.batch(epoch, index):
            if spec.labels.get("sync") != 1:
                continue
            video, audio = spec.windows
            times = bounces[video.item]
            in_video.append(int(((times >= video.video_start) & (times < video.video_start + video_s)).sum()))
            in_audio.append(int(((times >= audio.audio_start) & (times < audio.audio_start + audio_s)).sum()))
    if not in_video:
        raise SystemExit("the sampler drew no positive pairs; is data.sampler.kind sync_pairs?")
    in_video, in_audio = np.array(in_video), np.array(in_audio)
    coverage = float((in_video >= 1).mean())
    poisson = 1 - math.exp(-rate * video_s)
    print(json.dumps({
        "benchmark": "sync_windows", "positives": int(len(in_video)), "video_s": video_s, "audio_s": audio_s,
        "bounces_per_s": round(rate, 3),
        "video_windows_with_bounce": round(coverage, 3), "bounces_per_video_window": round(float(in_video.mean()), 3),
        "audio_windows_with_bounce": round(float((in_audio >= 1).mean()), 3),
        "bounces_per_audio_window": round(float(in_audio.mean()), 3),
        "poisson_reference": round(poisson, 3), "coverage_over_reference": round(coverage / poisson, 3),
    }))


if __name__ == "__main__":
    main()
