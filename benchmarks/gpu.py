"""The GPU check: each full-size recipe's real architecture trained for a few steps on a GPU, and the probe's
feature extraction rate — what a lab's first CUDA run will see.

    python benchmarks/gpu.py [--recipes xid,robust_xid,avts,temporal,movies] [--steps 50] [--workdir DIR]
    python benchmarks/gpu.py --device cpu --steps 2 --batch 2 --videos 4   # the same path on CPU (a smoke run)

Without CUDA (and without --device cpu) it prints {"benchmark": "gpu", "cuda": false} and exits 0.

Media: `--videos` generated H.264 + AAC videos (640×360, 30 fps, `--seconds` long; see generated_media.py),
ingested with `avcli ingest`'s default options (training copies: short side 128, 16 fps, FLAC 24 kHz). For each
recipe, one JSON line:
  - `pretrain` with the recipe's model, clip, method and batch size (bf16 autocast where the GPU has it, as
    `precision: auto` picks), `--steps` steps, `--workers` loader workers: clips/s (samples/s; a temporal sample
    holds three clips), step time, data-wait fraction and peak GPU memory, from metrics.jsonl after the first
    `--warmup` steps;
  - the loader's per-worker rate (the recipe's clip dataset and sampler in one process, clips/s) and the workers
    the measured step rate needs: compute-bound rate (samples/s ÷ (1 − data-wait)) ÷ per-worker rate, rounded up;
  - the linear probe's feature extraction rate (`extract_clip_features`, 10 evenly spaced clips per video, video
    and audio, on the device) with the trained encoders.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generated_media import make_video  # noqa: E402

from avcli.data.catalog import Catalog  # noqa: E402
from avcli.data.clip_dataset import ClipDataset  # noqa: E402
from avcli.data.samplers import build_sampler  # noqa: E402
from avcli.recipe import load_recipe  # noqa: E402
from avcli.train.loop import pretrain  # noqa: E402
from avcli.train.metrics import read_metrics  # noqa: E402
from avcli.train.runtime import resolve_precision  # noqa: E402

RECIPES = ("xid", "robust_xid", "avts", "temporal", "movies")


def make_catalog(workdir: Path, videos: int, seconds: float) -> Path:
    """Generated videos ingested with the default options (reused when the catalog exists)."""
    catalog = workdir / "catalog"
    if (catalog / "catalog.sqlite").exists():
        return catalog
    sources = workdir / "videos"
    sources.mkdir(parents=True, exist_ok=True)
    for k in range(videos):
        path = sources / f"clip_{k:03d}.mp4"
        if not path.exists():
            part = path.with_name("part_" + path.name)
            make_video(part, 640, 360, 30, seconds, seed=k, gop_s=2.0)
            part.replace(path)
    from avcli.cli import run

    code = run(["ingest", str(sources), "--out", str(catalog), "--workers", "4"])
    if code != 0:
        raise SystemExit(f"ingest of the generated videos failed with exit code {code}")
    return catalog


def loader_rate(recipe, items, samples: int) -> float:
    """Clips/s of the recipe's clip dataset in this process: one loader worker's rate."""
    sampler = build_sampler(recipe.data, items, recipe.training.batch_size, recipe.training.seed, 0, 1)
    dataset = ClipDataset(items, recipe.data.clip, recipe.data.augment, train=True, replacement=sampler.replacement,
                          audio_speed=getattr(recipe.data.sampler, "audio_speed", "resample"))
    specs: list = []
    for epoch in range(1000):  # a small catalog: as many epochs as it takes
        sampler.set_epoch(epoch)
        specs += [spec for batch in sampler for spec in batch]
        if len(specs) >= samples + 4:
            break
    specs = specs[: samples + 4]
    for spec in specs[:4]:  # warm up: open the files
        dataset[spec]
    start = time.perf_counter()
    for spec in specs[4:]:
        dataset[spec]
    seconds = time.perf_counter() - start
    dataset.readers.close()
    return (len(specs) - 4) / seconds


def extraction_rate(checkpoint: str, items, device: torch.device) -> float:
    from avcli.evaluate.clip_features import extract_clip_features
    from avcli.evaluate.clip_sampling import ClipPlan
    from avcli.evaluate.encoders import load_eval_encoders
    from avcli.tasks.base import TaskVideo

    encoders = load_eval_encoders(checkpoint, None)
    videos = [TaskVideo(it.path, 0, "test", source=it.source, video_stream=it.video_stream,
                        audio_stream=it.audio_stream, duration_s=it.duration_s) for it in items]
    plan = ClipPlan("even", 10)
    extract_clip_features(encoders, videos[:2], plan, {"video", "audio"}, device)  # warm up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    extract_clip_features(encoders, videos, plan, {"video", "audio"}, device, workers=4)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return len(videos) * plan.count / (time.perf_counter() - start)


def run_recipe(name: str, catalog: Path, workdir: Path, args, device: torch.device) -> dict:
    run_dir = workdir / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time
    overrides = [f"data.catalog={catalog}", f"training.steps={args.steps}",
                 f"training.device={args.device}", "training.log_every=1", f"training.checkpoint_every={10**9}",
                 f"output.run_dir={run_dir}", f"training.workers={args.workers}"]
    path = REPO / "recipes" / f"{name}.yaml"
    tree = yaml.safe_load(path.read_text())
    if args.batch:  # hierarchical batches hold whole titles: a multiple of clips_per_title
        per_title = tree["data"]["sampler"].get("clips_per_title", 1)
        overrides.append(f"training.batch_size={-(-args.batch // per_title) * per_title}")
    if "epochs" in tree["training"]:  # the length is --steps
        overrides.append("~training.epochs")
    if device.type == "cpu" and "held_out_pairs" in tree["method"]:  # a smoke run: AVTS's 1024 pairs take minutes
        overrides.append("method.held_out_pairs=8")
    recipe = load_recipe(path, overrides)
    with Catalog(catalog) as opened:
        items = opened.items(status="ok")
    precision = resolve_precision(device, recipe.training.precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    summary = pretrain(recipe)
    wall = time.perf_counter() - started
    metrics = [m for m in read_metrics(recipe.output.run_dir / "metrics.jsonl") if m["step"] > args.warmup]
    if not metrics:
        raise SystemExit(f"{name}: no step after the {args.warmup} warm-up steps; raise --steps")
    samples_per_s = sum(m["samples_per_s"] for m in metrics) / len(metrics)
    data_frac = sum(m["data_time_frac"] for m in metrics) / len(metrics)
    per_worker = loader_rate(recipe, items, args.loader_samples)
    compute_bound = samples_per_s / max(1.0 - data_frac, 1e-3)
    return {
        "benchmark": "gpu", "recipe": name, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": precision, "batch": recipe.training.batch_size, "workers": recipe.training.workers,
        "model": f"{recipe.model.video.name} + {recipe.model.audio.name}",
        "steps": summary["steps"], "final_loss": summary["final_loss"], "wall_s": round(wall, 1),
        "clips_per_s": round(samples_per_s, 1),
        "step_time_s": round(sum(m["step_time_s"] for m in metrics) / len(metrics), 4),
        "data_time_frac": round(data_frac, 3),
        "peak_mem_gb": round(max(m["peak_mem_gb"] for m in metrics), 2),
        "loader_clips_per_s_per_worker": round(per_worker, 1),
        "workers_needed": math.ceil(compute_bound / per_worker),
        "probe_extract_clips_per_s": round(extraction_rate(summary["checkpoint"], items, device), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the figures (cuDNN autotuning)")
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a smoke run of the same path)")
    parser.add_argument("--batch", type=int, help="override the recipes' batch size")
    parser.add_argument("--workers", type=int, default=8, help="loader workers")
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--loader-samples", type=int, default=64)
    parser.add_argument("--workdir", type=Path, help="keep the generated videos, catalog and runs here")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(json.dumps({"benchmark": "gpu", "cuda": False}))
        return
    device = torch.device(args.device)
    if args.device == "cpu":
        args.warmup = min(args.warmup, args.steps - 1)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        catalog = make_catalog(workdir, args.videos, args.seconds)
        for name in args.recipes.split(","):
            print(json.dumps(run_recipe(name, catalog, workdir, args, device)), flush=True)


if __name__ == "__main__":
    main()
