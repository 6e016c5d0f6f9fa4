"""Ablations of the four seed methods on the synthetic world (issue 5): linear-probe top-1, 3 seeds each.

    python benchmarks/ablations.py --workdir /tmp/avcli-ablations [--seeds 0 1 2] [--steps 300] [--only a,b]
                                   [--reprobe]

Every configuration is a shipped tiny recipe plus overrides, trained with `avcli pretrain` and probed with
`avcli probe --task synthetic` (video and audio) in subprocesses, exactly as a user would. Each finished run leaves
`WORKDIR/results/NAME-sSEED.json`, so an interrupted ablation resumes where it stopped. At the end it writes
`WORKDIR/ablations.md` and `WORKDIR/ablations.json` (mean ± std per configuration, the health figures each
method reports: AVTS held-out sync accuracy, Robust-xID weights of faulty and clean pairs, temporal accuracies)
and prints one JSON line: every configuration's mean top-1 and its margin over random init (the reference,
measured in the same run on the same world).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from avcli.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
WORLDS = {  # the clean world of the xID recipes, one where 30 % of the pairs are faulty (Robust-xID), and the clean
    # world with gravity and inelastic bounces (natural arrows of time, issue 25: the temporal recipes' world)
    "clean": ["data.synthetic.faulty_fraction=0.0", "data.synthetic.motion=bounce"],
    "faulty30": ["data.synthetic.faulty_fraction=0.3", "data.synthetic.motion=bounce"],
    "fall": ["data.synthetic.faulty_fraction=0.0", "data.synthetic.motion=fall"],
    # the fall world whose kicks tire (each 0.85 of the last): a trend over the video, so clips can be ordered
    "fall_tiring": ["data.synthetic.faulty_fraction=0.0", "data.synthetic.motion=fall",
                    "data.synthetic.kick_decay=0.85"],
    # tiring kicks, and each impact raises a ring of dust that widens and fades: an arrow inside every clip with an
    # impact in it, for the video direction task
    "fall_dust": ["data.synthetic.faulty_fraction=0.0", "data.synthetic.motion=fall",
                  "data.synthetic.kick_decay=0.85", "data.synthetic.impact_dust_s=0.75"],
}
TEMPORAL_TASKS = {"speed": "speed", "direction": "direction", "order": "intra-modal order",
                  "av_order": "video–audio order"}  # the temporal method's pretext-task weights, in words
NO_TEMPORAL_TASKS = [f"method.{task}=0" for task in TEMPORAL_TASKS]
NO_CONTRASTIVE = ["method.video_video=0", "method.video_audio=0"]


def temporal_world_rows(world: str, what: str) -> dict:
    """Random init and the temporal recipe on `world` (`what`: the world in words): the full objective, the
    contrastive terms only, the pretext tasks only, and each pretext task off in turn."""
    rows = {f"random_{world}": ("temporal-tiny.yaml", world, None, f"random init, {what}"),
            f"temporal_{world}": ("temporal-tiny.yaml", world, [], f"temporal on {what}: speed, direction, order + "
                                  "contrastive"),
            f"temporal_{world}_no_tasks": ("temporal-tiny.yaml", world, NO_TEMPORAL_TASKS,
                                           f"temporal on {what}: contrastive terms only"),
            f"temporal_{world}_tasks_only": ("temporal-tiny.yaml", world, NO_CONTRASTIVE,
                                             f"temporal on {what}: pretext tasks only")}
    rows.update({f"temporal_{world}_no_{task}": ("temporal-tiny.yaml", world, [f"method.{task}=0"],
                                                 f"temporal on {what}, no {words}")
                 for task, words in TEMPORAL_TASKS.items()})
    return rows


# name: (recipe, world, overrides, what the row shows)
CONFIGS = {
    "random": ("quickstart.yaml", "clean", None, "random init (no training)"),
    "xid": ("quickstart.yaml", "clean", [], "xID, in-batch negatives"),
    "xid_bank": ("xid-tiny.yaml", "clean", [], "xID, memory bank (NCE, constant Z)"),
    "xid_bank_softmax": ("xid-tiny.yaml", "clean", ["method.memory_bank.loss=softmax"],
                         "xID, memory bank (softmax over the K bank negatives)"),
    "movies_c4": ("movies-tiny.yaml", "clean", [], "movies: hierarchical, C = 4 clips per title"),
    "movies_c1": ("movies-tiny.yaml", "clean", ["data.sampler.clips_per_title=1"], "movies: C = 1 (uniform titles)"),
    "random_avts": ("avts-tiny.yaml", "clean", None, "random init, AVTS clips (16 frames, 2 s)"),
    "avts": ("avts-tiny.yaml", "clean", [], "AVTS with curriculum (hard negatives after switch_epoch)"),
    "avts_no_curriculum": ("avts-tiny.yaml", "clean", ["data.sampler.switch_epoch=null"], "AVTS, easy negatives only"),
    "temporal": ("temporal-tiny.yaml", "clean", [], "temporal: speed, direction, order + contrastive"),
    "temporal_natural": ("temporal-tiny.yaml", "clean", ["method.video_audio_clip=natural"],
                         "temporal, v–a pairs from the untransformed clip"),
    "temporal_no_tasks": ("temporal-tiny.yaml", "clean", NO_TEMPORAL_TASKS, "temporal: contrastive terms only"),
    "temporal_both": ("temporal-tiny.yaml", "clean", ["method.video_audio_clip=both"],
                      "temporal, v–a pairs from the main and the natural clip"),
    "temporal_both_no_vv": ("temporal-tiny.yaml", "clean", ["method.video_audio_clip=both", "method.video_video=0"],
                            "temporal, v–a pairs from both clips, no video–video term"),
    **temporal_world_rows("fall", "the fall world"),
    "random_fall_tiring": ("temporal-tiny.yaml", "fall_tiring", None, "random init, fall world, tiring kicks"),
    "temporal_fall_tiring": ("temporal-tiny.yaml", "fall_tiring", [], "temporal on the fall world with tiring "
                             "kicks (kick_decay 0.85)"),
    **temporal_world_rows("fall_dust", "the fall world with tiring kicks and impact dust"),
    "random_faulty30": ("robust_xid-tiny.yaml", "faulty30", None, "random init, 30 % faulty world (960 videos)"),
    "robust_off": ("robust_xid-tiny.yaml", "faulty30", ["method.weights=null", "method.soft_targets=null"],
                   "Robust-xID, weights off, soft targets off (= xID)"),
    "robust_weights": ("robust_xid-tiny.yaml", "faulty30", ["method.soft_targets=null"], "Robust-xID, weights only"),
    "robust_soft": ("robust_xid-tiny.yaml", "faulty30", ["method.weights=null"], "Robust-xID, soft targets only"),
    "robust_both": ("robust_xid-tiny.yaml", "faulty30", [], "Robust-xID, weights + soft targets"),
    "robust_oracle": ("robust_xid-tiny.yaml", "faulty30", ["method.weights.source=known_faulty"],
                      "Robust-xID, known faulty pairs weighted w_min (oracle) + soft targets"),
}
HEALTH_KEYS = ("heldout_sync_accuracy", "heldout_sync_accuracy_calibrated", "heldout_sync_accuracy_hard",
               "heldout_sync_accuracy_easy", "bank_weight_faulty", "bank_weight_clean", "bank_agreement_dprime",
               "speed_accuracy", "direction_accuracy", "order_accuracy", "av_order_accuracy",
               "heldout_speed_accuracy", "heldout_speed_accuracy_audio", "heldout_direction_accuracy",
               "heldout_direction_accuracy_audio", "heldout_order_accuracy", "heldout_order_accuracy_audio",
               "heldout_av_order_accuracy", "xmodal_top1",
               "heldout_mean_cosine_audio", "heldout_distance_positive",
               "heldout_distance_easy")


def world_name(recipe: str, world: str) -> str:
    """The catalog directory of a recipe's world: the world kind and its size (the robust recipe's is larger)."""
    return f"{world}-{load_recipe(RECIPES / recipe).data.synthetic.videos}"


def avcli(args: list[str], log: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "a") as err:
        done = subprocess.run([sys.executable, "-m", "avcli", "-q", *args], stdout=subprocess.PIPE, stderr=err,
                              text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"avcli {' '.join(args[:2])} failed (exit {done.returncode}); see {log}")
    return done.stdout


def probe(checkpoint: str, extra: list[str], log: Path) -> dict:
    lines = avcli(["probe", "--task", "synthetic", "--checkpoint", checkpoint, *extra], log).splitlines()
    return {r["modality"]: r["top1"] for r in map(json.loads, lines)}


def _paths(name: str, seed: int, workdir: Path) -> tuple[Path, Path, Path, Path]:
    """(the world's catalog, the run's folder, its log, the resolved recipe of a random-init row)."""
    recipe, world = CONFIGS[name][:2]
    return (workdir / "catalogs" / world_name(recipe, world), workdir / "runs" / f"{name}-s{seed}",
            workdir / "logs" / f"{name}-s{seed}.log", workdir / "logs" / f"{name}-s{seed}.yaml")


def probe_row(name: str, seed: int, workdir: Path) -> dict:
    """{modality: top-1} of a row whose training (or, for random init, resolved recipe) is done."""
    catalog, run_dir, log, resolved = _paths(name, seed, workdir)
    if CONFIGS[name][2] is None:
        return probe("random", ["--recipe", str(resolved), "--data-root", str(catalog)], log)
    return probe(str(run_dir / "checkpoints" / "latest"), [], log)


def run_one(name: str, seed: int, workdir: Path, steps: int | None) -> dict:
    recipe, world, overrides, _ = CONFIGS[name]
    catalog, run_dir, log, resolved = _paths(name, seed, workdir)
    common = [f"data.catalog={catalog}", *WORLDS[world], f"training.seed={seed}"]
    started = time.perf_counter()
    if overrides is None:  # random init: the recipe's architecture, initialised from the seed
        resolved.write_text(avcli(["validate", str(RECIPES / recipe), *common,
                                   f"output.run_dir={run_dir}"], log))
        if not (catalog / "catalog.sqlite").exists():  # the world is generated by the first pretraining
            raise SystemExit(f"{catalog}: train a configuration on the {world} world first")
        top1 = probe_row(name, seed, workdir)
        health = {}
    else:
        length = [f"training.steps={steps}"] if steps else []
        avcli(["pretrain", str(RECIPES / recipe), *common, *overrides, *length, f"output.run_dir={run_dir}",
               "--resume", "auto"], log)
        top1 = probe_row(name, seed, workdir)
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        last = json.loads(lines[-1])
        health = {"steps": last["step"], **{k: last[k] for k in HEALTH_KEYS if k in last}}
    return {"name": name, "seed": seed, "video": top1["video"], "audio": top1["audio"], **health,
            "seconds": round(time.perf_counter() - started, 1)}


def _random_reference(name: str) -> str:
    """The random-init row a configuration is compared with: the one of its recipe and world (same architecture
    and clips) where there is one, else the first one of its world."""
    recipe, world = CONFIGS[name][:2]
    randoms = [n for n, c in CONFIGS.items() if c[2] is None and c[1] == world]
    return next((n for n in randoms if CONFIGS[n][0] == recipe), randoms[0])


def summarise(results: list[dict]) -> dict:
    by_name: dict[str, list[dict]] = {}
    for r in results:
        by_name.setdefault(r["name"], []).append(r)
    table = {}
    for name, rows in by_name.items():
        entry = {"what": CONFIGS[name][3], "seeds": sorted(r["seed"] for r in rows),
                 "steps": sorted({r["steps"] for r in rows if "steps" in r})}
        for key in ("video", "audio", *HEALTH_KEYS):
            values = [r[key] for r in rows if key in r]
            if values:
                entry[key] = {"mean": round(statistics.mean(values), 2 if key in ("video", "audio") else 4),
                              "std": round(statistics.pstdev(values), 2 if key in ("video", "audio") else 4)}
        table[name] = entry
    return table


def markdown(table: dict) -> str:
    lines = ["| configuration | steps | video top-1 | audio top-1 | health (end of training) |",
             "|---|---|---|---|---|"]
    for name in CONFIGS:
        if name not in table:
            continue
        e = table[name]
        health = ", ".join(f"{k} {e[k]['mean']:.3f}" for k in HEALTH_KEYS if k in e and k != "xmodal_top1")
        steps = "/".join(map(str, e["steps"])) or "–"
        lines.append(f"| {e['what']} (`{name}`, {len(e['seeds'])} seeds) | {steps} | {e['video']['mean']:.1f} ± "
                     f"{e['video']['std']:.1f} | {e['audio']['mean']:.1f} ± {e['audio']['std']:.1f} | {health} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/avcli-ablations"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="training steps of every run (default: the recipe's)")
    parser.add_argument("--only", default=None, help="comma-separated configuration names")
    parser.add_argument("--reprobe", action="store_true",
                        help="probe the finished rows again with the current code (after a change to the probe), "
                             "keeping their training figures")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(CONFIGS)
    unknown = set(names) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"--only: unknown configuration(s) {', '.join(sorted(unknown))}; known: {', '.join(CONFIGS)}")
    for sub in ("results", "logs", "runs", "catalogs"):
        (args.workdir / sub).mkdir(parents=True, exist_ok=True)
    # train before probing random init: the first training run generates each world
    names.sort(key=lambda n: CONFIGS[n][2] is None)
    for seed in args.seeds:
        for name in names:
            out = args.workdir / "results" / f"{name}-s{seed}.json"
            if out.exists() and args.reprobe:
                result = json.loads(out.read_text())
                before = (result["video"], result["audio"])
                result.update(probe_row(name, seed, args.workdir))
                out.write_text(json.dumps(result))
                print(f"{name} seed {seed}: probed again, video {before[0]:.1f} → {result['video']:.1f}, audio "
                      f"{before[1]:.1f} → {result['audio']:.1f}", file=sys.stderr, flush=True)
            if out.exists():
                continue
            result = run_one(name, seed, args.workdir, args.steps)
            out.write_text(json.dumps(result))
            print(f"{name} seed {seed}: video {result['video']:.1f} audio {result['audio']:.1f} "
                  f"({result['seconds']:.0f} s)", file=sys.stderr, flush=True)
    results = [json.loads(p.read_text()) for p in sorted((args.workdir / "results").glob("*.json"))]
    table = summarise(results)
    (args.workdir / "ablations.json").write_text(json.dumps(table, indent=1))
    (args.workdir / "ablations.md").write_text(markdown(table))
    summary = {"benchmark": "ablations", "seeds": args.seeds}
    for name, e in table.items():
        reference = table.get(_random_reference(name))
        summary[name] = {"steps": e["steps"], **{m: e[m]["mean"] for m in ("video", "audio")}}
        if reference is not None and CONFIGS[name][2] is not None:
            summary[name].update({f"{m}_over_random": round(e[m]["mean"] - reference[m]["mean"], 2)
                                  for m in ("video", "audio")})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
