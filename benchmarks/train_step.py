"""Toolkit overhead per training step against the bare forward/backward of the same model and batch (issue 6).

    python benchmarks/train_step.py [--batch 16] [--rounds 30] [--log-every 10] [--checkpoint-every 250]

One CPU process, the tiny encoders of the shipped tiny recipes, one fixed batch in memory (data loading is
measured by benchmarks/loader.py). Two step functions alternate on the same model and optimiser, so machine load
hits both alike:

- bare: embed video and audio, symmetric InfoNCE, backward, optimizer.step, zero_grad — what a hand-written
  training script does;
- toolkit: what avcli/train/loop.py does per step on one process: the TrainStep module (the xID objective, with
  its health figure), autocast context, snapshot of the buffers (for undoing a non-finite step), the step
  agreement (the step's one read of the loss), optimizer and scheduler steps, throughput bookkeeping; plus, amortised, one metrics.jsonl
  line every `--log-every` steps and one checkpoint every `--checkpoint-every` steps (each timed separately).

The two alternate in ABBA order. Prints one JSON line: median step times in ms; overhead_frac = the median over rounds of toolkit/bare − 1 (each
pair measured back to back, so load drifts on a shared machine cancel) + amortised logging and checkpoint time
over the bare step; and, as a cross-check that does not depend on timing two big steps, the extra work alone
(extra_work_ms_per_step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avcli.losses import infonce, retrieval_accuracy  # noqa: E402
from avcli.media.audio_features import build_audio_frontend  # noqa: E402
from avcli.models import build_model  # noqa: E402
from avcli.recipe import recipe_from_dict, recipe_to_yaml  # noqa: E402
from avcli.train.checkpoint import rng_state, save_checkpoint  # noqa: E402
from avcli.train.distributed import Context  # noqa: E402
from avcli.train.metrics import MetricsWriter  # noqa: E402
from avcli.train.objectives import TrainBatch, build_objective  # noqa: E402
from avcli.train.observe import Throughput, log_line  # noqa: E402
from avcli.train.optim import build_optimizer, build_scheduler  # noqa: E402
from avcli.train.runtime import autocast  # noqa: E402
from avcli.train.loop import read_stats  # noqa: E402
from avcli.train.step import BufferSnapshot, TrainStep, agree, clip_gradients, for_ranks  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    args = parser.parse_args()

    # the tiny recipes' model and clip (recipes/xid-tiny.yaml, in-batch xID as in quickstart)
    recipe = recipe_from_dict({
        "data": {"catalog": "/unused", "clip": {"frames": 4, "fps": 4, "size": 56, "audio_seconds": 2.0,
                                                "sample_rate": 16000}, "audio": {"n_mels": 40}},
        "model": {"video": {"name": "tiny_r2plus1d", "width": 16}, "audio": {"name": "tiny_conv2d", "width": 16},
                  "projector": {"hidden_dim": 128, "out_dim": 64}},
        "method": {"kind": "xid", "temperature": 0.1},
        "optimizer": {"name": "adamw", "lr": 0.002},
        "training": {"steps": 10**6, "batch_size": args.batch, "device": "cpu", "log_every": args.log_every,
                     "checkpoint_every": args.checkpoint_every},
        "output": {"run_dir": "/unused"},
    })
    cfg, device = recipe.training, torch.device("cpu")
    ctx = Context(0, 1, 0, device)
    torch.manual_seed(0)
    model = build_model(recipe.model)
    frontend = build_audio_frontend(recipe.data.audio, recipe.data.clip.sample_rate)
    objective = build_objective(recipe, model, [None] * args.batch)
    parameters = [*model.parameters(), *objective.parameters()]
    optimizer = build_optimizer(parameters, recipe.optimizer)
    scheduler = build_scheduler(optimizer, cfg.steps, recipe.schedule)
    g = torch.Generator().manual_seed(1)
    batch = TrainBatch(video=torch.randn(args.batch, 1, 3, 4, 56, 56, generator=g),
                       audio=torch.randn(args.batch, 1, 1, 200, 40, generator=g),
                       video_mask=torch.ones(args.batch, 1, dtype=torch.bool),
                       audio_mask=torch.ones(args.batch, 1, dtype=torch.bool),
                       items=torch.arange(args.batch).unsqueeze(1), labels={})

    def bare() -> None:
        v, a = model.embed_video(batch.video[:, 0]), model.embed_audio(batch.audio[:, 0])
        infonce(v, a, 0.1).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    runner = for_ranks(TrainStep(model, objective), ctx)
    snapshot = BufferSnapshot(runner)
    window = Throughput(1)

    def toolkit() -> dict:
        window.waiting()
        window.arrived()
        snapshot.take()
        with autocast(device, cfg.precision):
            loss, stats = runner(batch)
        (loss / cfg.grad_accum_steps).backward()
        outcome = agree(loss.detach(), False, ctx, clip_gradients(parameters, cfg.grad_clip)
                        if cfg.grad_clip is not None else None)
        if outcome.finite and outcome.grads_finite is not False:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        window.stepped(args.batch)
        return {"loss": outcome.loss, **stats}

    model.train()
    for _ in range(3):  # warm-up: allocator, first-call costs
        bare()
        toolkit()
    times = {"bare": [], "toolkit": []}
    order = [("bare", bare), ("toolkit", toolkit)]
    for r in range(args.rounds):
        for name, fn in order if r % 2 == 0 else order[::-1]:  # ABBA: neither always runs first
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        metrics = MetricsWriter(run_dir / "metrics.jsonl")
        log_times, checkpoint_times = [], []
        for step in range(5):
            stats = toolkit()
            t0 = time.perf_counter()
            record = {"step": step, "epoch": 0, "loss": round(stats.pop("loss"), 6), "lr": scheduler.get_last_lr()[0],
                      **window.figures(device), "skipped_samples": 0, "nonfinite_steps": 0,
                      **{k: round(v, 4) for k, v in read_stats(stats).items()}}
            metrics.write(record)
            log_line(record, cfg.steps)
            window.reset()
            log_times.append(time.perf_counter() - t0)
        metrics.close()
        recipe_yaml = recipe_to_yaml(recipe)
        for step in range(3):
            t0 = time.perf_counter()
            state = {"step": step, "optimizer": optimizer.state_dict(), "objective": objective.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": rng_state(device), "rng_per_rank": [rng_state(device)]}
            save_checkpoint(run_dir, step, model, frontend, state, recipe_yaml, cfg.keep_last_n)
            checkpoint_times.append(time.perf_counter() - t0)

    # the extra work on its own, timed in a tight loop: buffer snapshot, the objective's health figure,
    # scheduler step, agreement and throughput bookkeeping (the forward/backward is the same in both paths)
    with torch.no_grad():
        v, a = model.embed_video(batch.video[:, 0]), model.embed_audio(batch.audio[:, 0])
    t0 = time.perf_counter()
    for _ in range(100):
        snapshot.take()
        retrieval_accuracy(v, a)
        agree(torch.ones(()), False, ctx)
        window.waiting(), window.arrived(), window.stepped(args.batch)
    extras_ms = 1000 * (time.perf_counter() - t0) / 100

    ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
    logging_ms = 1000 * statistics.median(log_times) / args.log_every
    checkpoint_ms = 1000 * statistics.median(checkpoint_times) / args.checkpoint_every
    # each round's toolkit step against the bare step right next to it: machine load drifts cancel
    paired = statistics.median(t / b - 1 for t, b in zip(times["toolkit"], times["bare"]))
    overhead = paired + (logging_ms + checkpoint_ms) / ms["bare"]
    print(json.dumps({
        "benchmark": "train_step", "device": "cpu", "threads": torch.get_num_threads(), "batch": args.batch,
        "clip": "4×56×56 video, 2 s audio (40 mel)", "encoders": "tiny_r2plus1d w16 + tiny_conv2d w16",
        "rounds": args.rounds, "bare_step_ms": round(ms["bare"], 2), "toolkit_step_ms": round(ms["toolkit"], 2),
        "logging_ms_per_step": round(logging_ms, 3), "checkpoint_ms_per_step": round(checkpoint_ms, 3),
        "extra_work_ms_per_step": round(extras_ms, 3), "extra_work_frac": round(extras_ms / ms["bare"], 4),
        "overhead_frac": round(overhead, 4), "target_frac": 0.10, "within_target": overhead <= 0.10,
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
