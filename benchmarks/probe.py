"""Probe feature extraction throughput: is extraction limited by decoding + the model, or by glue?

On generated UCF101-like videos (320×240, 25 fps, H.264 + AAC) ingested into a catalog, with the loader
benchmark's clip (8 frames @16 fps, 112 px + 2 s @24 kHz log-mel) and the quickstart's tiny encoders, one
process, one thread, the standard video test sampling (10 evenly spaced + 25 random clips per video):
  - decode: the probe's dataset alone (every clip's frames cropped, its audio window read), clips/s;
  - model: the encoders alone on those decoded clips (video, log-mel, audio), clips/s;
  - extract: `extract_clip_features` end to end, clips/s, and the glue fraction 1 - (decode + model) / extract;
  - loader: the training loader (`ClipDataset`, uniform random clips, augmentation left to the device) on the
    same catalog, clips/s (the loader benchmark's figure for these files), and extraction's ratio to it.
Prints one JSON line.

    python benchmarks/probe.py [--videos 8] [--seconds 7] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from avcli.data.clip_dataset import ClipDataset
from avcli.data.samplers import UniformSampler
from avcli.data.video_transforms import normalize_video
from avcli.evaluate.clip_features import VideoClips, collate_clips, extract_clip_features
from avcli.evaluate.clip_sampling import ClipPlan
from avcli.evaluate.encoders import load_eval_encoders
from avcli.media.audio_features import LogMel
from avcli.recipe.schema import Augment
from avcli.tasks.base import TaskVideo

from generated_media import make_video
from loader import CLIP, ingest, specs_from, time_avcli

REPO = Path(__file__).resolve().parents[1]


def recipe_file(folder: Path) -> Path:
    """The quickstart recipe's encoders with the loader benchmark's clip."""
    tree = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text())
    tree["data"]["clip"] = CLIP.model_dump(exclude_none=True)
    path = folder / "probe-benchmark.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def measure(encoders, videos: list[TaskVideo], plans: list[ClipPlan]) -> dict:
    clips = sum(plan.count for plan in plans) * len(videos)
    model, frontend = encoders.model.eval(), encoders.frontend.eval()
    decoded, decode_s = [], 0.0
    for plan in plans:
        dataset = VideoClips(videos, CLIP, plan, want_video=True, want_audio=True)
        start = time.perf_counter()
        decoded += [collate_clips([dataset[i]]) for i in range(len(dataset))]
        decode_s += time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        for batch in decoded:
            model.video(normalize_video(batch["video"]))
            model.audio(frontend(batch["audio"]))
    model_s = time.perf_counter() - start
    start = time.perf_counter()
    for plan in plans:
        extract_clip_features(encoders, videos, plan, {"video", "audio"}, torch.device("cpu"))
    extract_s = time.perf_counter() - start
    return {"clips": clips, "decode_clips_per_s": round(clips / decode_s, 1),
            "model_clips_per_s": round(clips / model_s, 1), "extract_clips_per_s": round(clips / extract_s, 1),
            "glue_fraction": round(1 - (decode_s + model_s) / extract_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="generated videos")
    parser.add_argument("--seconds", type=float, default=7.0, help="length of each (UCF101 averages about 7 s)")
    parser.add_argument("--loader-clips", type=int, default=200, help="clips for the training-loader figure")
    parser.add_argument("--workdir", type=Path, help="keep generated videos and the catalog here (reused)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one process, one thread: the loader benchmark's setting
    report: dict = {"benchmark": "probe", "clip": "8 frames @16 fps, 112 px + 2 s @24 kHz log-mel",
                    "encoders": "quickstart (tiny_r2plus1d 16, tiny_conv2d 16)"}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.workdir or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        sources = []
        for k in range(args.videos):
            path = tmp / f"ucf_like_{k}.mp4"
            if not path.exists():
                part = path.with_name("part_" + path.name)
                make_video(part, 320, 240, 25, args.seconds, seed=k)
                part.replace(path)
            sources.append(path)
        items = ingest(sources, tmp / "catalog")
        encoders = load_eval_encoders("random", recipe_file(tmp))
        encoders.frontend.fitted.fill_(True)  # statistics do not change the cost
        plans = [ClipPlan("even", 10), ClipPlan("random", 25, 1)]
        originals = [TaskVideo(str(p), 0, "test") for p in sources]
        copies = [TaskVideo(it.path, 0, "test", source=it.source, video_stream=it.video_stream,
                            audio_stream=it.audio_stream, duration_s=it.duration_s) for it in items]
        report["originals"] = measure(encoders, originals, plans)
        report["catalog_copies"] = measure(encoders, copies, plans)
        logmel = LogMel(CLIP.sample_rate, 40, 0.01, 0.025, 80.0)
        per_item = max(1, -(-args.loader_clips // len(items)))
        batches = specs_from(UniformSampler(items, CLIP, batch_size=8, seed=0, clips_per_item=per_item),
                             args.loader_clips)
        loader = ClipDataset(items, CLIP, Augment(on_device=True), train=True)
        time_avcli(loader, batches[:2], logmel)  # warm up
        report["loader_clips_per_s"] = round(time_avcli(loader, batches, logmel), 1)
    copies = report["catalog_copies"]
    report["extract_over_loader"] = round(copies["extract_clips_per_s"] / report["loader_clips_per_s"], 2)
    report["decode_over_loader"] = round(copies["decode_clips_per_s"] / report["loader_clips_per_s"], 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
