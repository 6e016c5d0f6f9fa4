"""Catalog and samplers at scale: a catalog of N rows (no media), loaded and sampled the way `avcli pretrain` does.

    python benchmarks/catalog_scale.py [--rows 1000000] [--workdir DIR] [--world-size 8] [--batch-size 64]
                                       [--only uniform,hierarchical,sync_pairs,temporal]

With --workdir the catalog is kept there (DIR/catalog-N) and later runs reuse it (setup_s is then null);
without it, it goes to a temporary folder removed at the end.

Setup (timed apart): a catalog of `--rows` rows written through `Catalog.upsert`, rows shaped like what ingest
writes (probe fields, a transcoded copy with its audio sidecar, shots, flags, labels and splits, titles grouped
into shows with seasons and episodes, about 2 % rejected). Then, each phase timed, with the process's peak RSS
after it (ru_maxrss only grows: a phase's figure is the peak so far; a sampler is dropped before the next one, so
the last figure is the peak of "items + the biggest sampler", i.e. what one rank holds):

  load      `training_items` as pretrain calls it: open the catalog, read the usable items;
  <kind>    build the sampler of each kind (uniform, hierarchical, sync_pairs, temporal) as rank 0 of
            `--world-size` and plan one epoch for it (every batch rank 0 iterates, specs materialised);
  stats     `avcli ingest stats --json CATALOG` in a subprocess (its own wall time and peak RSS).

One JSON line: the figures, the sampling total (load + every sampler; wall clock, and the process's CPU time,
which a machine shared with other jobs inflates less) and its ratio to the 30 s target, the peak RSS and its
ratio to the 2 GB per-rank target.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from avcli.data.catalog import Catalog, item_id_for
from avcli.data.samplers import HierarchicalSampler, SyncPairSampler, TemporalSampler, UniformSampler

TARGET_S = 30.0  # items loaded + every sampler built and planned (issue 26)
TARGET_RSS_MB = 2048.0  # per rank
CHUNK = 20_000  # rows per upsert: the transaction size ingest would commit is smaller; this only speeds setup


# `avcli ingest stats` in a child that reports its own peak RSS (VmHWM) last on stderr: the child's ru_maxrss
# would start from this process's peak, since Linux carries the forking process's high-water mark over exec
STATS_CHILD = """
import atexit, re, sys
def report():
    sys.stderr.write(" " + re.search(r"VmHWM:\\s*(\\d+)", open("/proc/self/status").read()).group(1) + "\\n")
atexit.register(report)
sys.argv[0] = "avcli"
from avcli.cli import main
main()
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def catalog_rows(start: int, stop: int, rng: np.random.Generator) -> list[dict]:
    """Rows [start, stop) as ingest writes them. Items are episodes of titles: 8 items a title (parts of one
    title, as a movie split into files), 10 titles a season, 3 seasons a show; 400 labels; splits 90/10."""
    rows = []
    for i in range(start, stop):
        path = f"/data/shows/s{i // 240:05d}/season{(i // 80) % 3 + 1}/t{i // 8:07d}/part{i % 8}.mp4"
        item_id = item_id_for(path)
        duration = float(rng.uniform(8.0, 90.0))
        rejected = rng.random() < 0.02
        row = {
            "item_id": item_id, "path": path, "size_bytes": int(duration * 250_000), "mtime": 1.7e9 + i,
            "content_hash": f"{i:040x}", "status": "rejected" if rejected else "ok",
            "reject_reason": "no audio stream" if rejected else None,
            "flags": ["variable_frame_rate"] if rng.random() < 0.05 else [],
            "title_id": f"t{i // 8:07d}", "show_id": f"s{i // 240:05d}", "season": (i // 80) % 3 + 1,
            "episode": (i // 8) % 10 + 1, "label": f"class{i % 400:03d}", "split": "val" if i % 10 == 9 else "train",
            "container": "mov,mp4,m4a,3gp,3g2,mj2", "start_s": 0.0, "duration_s": duration, "fps": 25.0,
            "width": 1280, "height": 720, "rotation": 0, "video_stream": 0, "video_codec": "h264",
            "audio_stream": 1, "audio_codec": "aac", "audio_rate": 48000, "audio_channels": 2,
            "media": None, "shots": [],
        }
        if not rejected:
            shots = np.cumsum(rng.exponential(8.0, size=16))
            row["media"] = {"path": f"media/{item_id[:2]}/{item_id}.mkv", "video_stream": 0, "audio_stream": 1,
                            "fps": 16.0, "width": 228, "height": 128, "audio_rate": 24000,
                            "duration_s": round(duration - 0.04, 3), "audio_sidecar": f"media/{item_id[:2]}/{item_id}.wav"}
            row["shots"] = [round(float(s), 3) for s in shots[shots < duration - 0.5]]
        rows.append(row)
    return rows


def build_catalog(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    with Catalog(root, create=True) as catalog:
        for start in range(0, n, CHUNK):
            catalog.upsert(catalog_rows(start, min(start + CHUNK, n), rng))


def plan_epoch(sampler) -> int:
    """Rank 0's whole epoch, as its DataLoader would draw it; returns the number of specs."""
    sampler.set_epoch(0)
    return sum(len(batch) for batch in sampler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None, help="where the catalog goes (default: a temp dir)")
    parser.add_argument("--world-size", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--only", default="", help="comma-separated phases to run (default: all)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        # with --workdir the catalog is kept there and reused by later runs (setup_s is then null)
        root = args.workdir / f"catalog-{args.rows}" if args.workdir else Path(tmp) / "catalog"
        out = {"benchmark": "catalog_scale", "rows": args.rows, "world_size": args.world_size,
               "batch_size": args.batch_size, "setup_s": None}
        if not (root / "done").exists():
            t = time.perf_counter()
            build_catalog(root, args.rows)
            (root / "done").touch()
            out["setup_s"] = round(time.perf_counter() - t, 1)
        out["setup_rss_mb"] = round(peak_rss_mb())
        gc.collect()

        from avcli.train.loop import training_items  # pretrain's own path: catalog → usable items

        recipe = SimpleNamespace(data=SimpleNamespace(catalog=root, synthetic=None))
        t, cpu = time.perf_counter(), time.process_time()
        items = training_items(recipe)
        out.update(items=len(items), load_s=round(time.perf_counter() - t, 2),
                   load_cpu_s=round(time.process_time() - cpu, 2), load_rss_mb=round(peak_rss_mb()))

        clip = SimpleNamespace(frames=8, fps=16.0, audio_seconds=2.0, max_offsync_s=0.5)
        common = (items, clip, args.batch_size, 0, 0, args.world_size)
        makers = {
            "uniform": lambda: UniformSampler(*common),
            "hierarchical": lambda: HierarchicalSampler(*common, clips_per_title=4, shots="different"),
            "sync_pairs": lambda: SyncPairSampler(*common, switch_epoch=0, superhard_fraction=0.1),
            "temporal": lambda: TemporalSampler(*common),
        }
        only = set(filter(None, args.only.split(",")))
        sampling_s, sampling_cpu_s = out["load_s"], out["load_cpu_s"]
        for kind, make in makers.items():
            if only and kind not in only:
                continue
            t, cpu = time.perf_counter(), time.process_time()
            sampler = make()
            built = time.perf_counter() - t
            specs = plan_epoch(sampler)
            total, total_cpu = time.perf_counter() - t, time.process_time() - cpu
            sampling_s += total
            sampling_cpu_s += total_cpu
            out.update({f"{kind}_build_s": round(built, 2), f"{kind}_plan_s": round(total - built, 2),
                        f"{kind}_cpu_s": round(total_cpu, 2), f"{kind}_specs": specs,
                        f"{kind}_rss_mb": round(peak_rss_mb())})
            del sampler
            gc.collect()

        t = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", STATS_CHILD, "ingest", "stats", "--json", str(root)],
                                capture_output=True, text=True, check=True)
        stats = json.loads(result.stdout)
        out.update(stats_s=round(time.perf_counter() - t, 2), stats_rss_mb=round(int(result.stderr.split()[-1]) / 1024),
                   stats_files=stats["files"], stats_ok=stats["ok"])
        peak = peak_rss_mb()
        out.update(sampling_s=round(sampling_s, 2), sampling_over_target=round(sampling_s / TARGET_S, 3),
                   sampling_cpu_s=round(sampling_cpu_s, 2),
                   peak_rss_mb=round(peak), rss_over_target=round(peak / TARGET_RSS_MB, 3))
        print(json.dumps(out))


if __name__ == "__main__":
    main()
