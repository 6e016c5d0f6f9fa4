"""The pretraining loop: one function to read top to bottom.

recipe → catalog items → sampler + clip dataset → model + audio front end → objective → optimiser steps,
with metrics.jsonl, checkpoints every `checkpoint_every` steps and at the end, `--resume auto`, and a clean stop
(checkpoint + exit code 4) on SIGINT/SIGTERM.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from avcli.data.catalog import Catalog
from avcli.data.audio_transforms import apply_spec_masks
from avcli.data.clip_dataset import ClipDataset, DataError, centred_spec, collate_samples
from avcli.data.samplers import build_sampler
from avcli.data.video_transforms import augment_video_batch, normalize_video
from avcli.errors import AvcliError, Interrupted, UsageError
from avcli.log import get_logger, progress
from avcli.media.audio_features import build_audio_frontend
from avcli.models import build_model
from avcli.recipe import Recipe, recipe_to_yaml, save_recipe
from avcli.train.checkpoint import (
    complete_checkpoints,
    load_encoders,
    load_train_state,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from avcli.train.health import KNNMonitor, evaluate_held_out, held_out_batch
from avcli.train.metrics import MetricsWriter
from avcli.train.objectives import TrainBatch, build_objective
from avcli.train.optim import build_optimizer, build_scheduler
from avcli.train.runtime import autocast, resolve_device, seed_everything

log = get_logger("train")


def pretrain(recipe: Recipe, resume: str | None = None) -> dict:
    """Train as the recipe says; returns a summary (run dir, last checkpoint, final loss, steps)."""
    cfg = recipe.training
    run_dir = recipe.output.run_dir
    resume_from = _resume_point(run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_recipe(recipe, run_dir / "recipe.yaml")
    recipe_yaml = recipe_to_yaml(recipe)

    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    items = training_items(recipe)
    model = build_model(recipe.model).to(device)
    frontend = build_audio_frontend(recipe.data.audio, recipe.data.clip.sample_rate).to(device)
    try:
        objective = build_objective(recipe, model, items).to(device)
    except ValueError as exc:
        raise UsageError(f"method: {exc}") from None

    try:
        sampler = build_sampler(recipe.data, items, cfg.batch_size, cfg.seed)
    except ValueError as exc:
        raise UsageError(f"data.sampler: {exc}") from None
    dataset = ClipDataset(
        items, recipe.data.clip, recipe.data.augment, train=True, replacement=sampler.replacement,
        max_consecutive_failures=recipe.data.max_consecutive_failures,
    )
    steps_per_epoch = len(sampler)
    if steps_per_epoch == 0:
        raise UsageError(
            f"training.batch_size={cfg.batch_size} is larger than one epoch ({len(items)} items × "
            f"{recipe.data.clips_per_item} clips); lower it or raise data.clips_per_item"
        )
    total_steps = cfg.steps or cfg.epochs * steps_per_epoch
    # the objective's own heads (temporal classifiers, AVTS fused classifier) train with the encoders
    optimizer = build_optimizer([*model.parameters(), *objective.parameters()], recipe.optimizer)
    scheduler = build_scheduler(optimizer, total_steps, recipe.schedule)

    step, epoch, batch_in_epoch, samples_seen = 0, 0, 0, 0
    if resume_from is not None:
        load_encoders(resume_from / "encoders.safetensors", model, frontend)
        state = load_train_state(resume_from)
        if "objective" in state:
            objective.load_state_dict(state["objective"])
        elif objective.state_dict():
            raise UsageError(f"{resume_from}: checkpoint has no {recipe.method.kind} state (written by an older "
                             "avcli); start a new run directory")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        samples_seen = state["samples_seen"]
        set_rng_state(state["rng"])
        log.info("resuming from %s (step %d, epoch %d)", resume_from, step, epoch)
    else:
        fit_audio_frontend(frontend, dataset, cfg.batch_size, device)
    metrics = MetricsWriter(run_dir / "metrics.jsonl", resume_step=step if resume_from is not None else None)

    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_samples,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        pin_memory=device.type == "cuda",
    )

    def checkpoint() -> Path:
        state = {
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "samples_seen": samples_seen,
            "optimizer": optimizer.state_dict(),
            "objective": objective.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
        }
        return save_checkpoint(run_dir, step, model, frontend, state, recipe_yaml, cfg.keep_last_n)

    log.info(
        "training %s on %d items, %d steps (%d per epoch), batch %d, device %s",
        recipe.method.kind, len(items), total_steps, steps_per_epoch, cfg.batch_size, device,
    )
    def make_batch(collated: dict) -> TrainBatch:
        return train_batch(collated, frontend, recipe.data, device)

    held_out = held_out_batch(objective, sampler, dataset, make_batch, recipe.method)
    knn = KNNMonitor(cfg.knn, dataset, make_batch) if cfg.knn is not None else None
    model.train()
    objective.train()
    last_saved, last_loss = resume_from if resume_from is not None and step >= total_steps else None, None
    window = {"t0": time.perf_counter(), "data": 0.0, "samples": 0, "skipped": 0}
    with _stop_requests() as stop, progress(transient=False) as bar:
        task = bar.add_task("pretrain", total=total_steps, completed=step)
        while step < total_steps:
            sampler.set_epoch(epoch, start_batch=batch_in_epoch)
            if batch_in_epoch == 0:  # mid-epoch resumes keep the epoch's state from the checkpoint
                objective.on_epoch_start(epoch)
            t_fetch = time.perf_counter()
            for batch in loader:
                window["data"] += time.perf_counter() - t_fetch
                inputs = train_batch(batch, frontend, recipe.data, device)
                window["skipped"] += int(batch["skipped"].sum())
                with autocast(device, cfg.precision):
                    loss, stats = objective(model, inputs)
                if not torch.isfinite(loss):
                    raise AvcliError(
                        f"the loss became {loss.item()} at step {step + 1}; lower optimizer.lr or check the data"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step, batch_in_epoch = step + 1, batch_in_epoch + 1
                samples_seen += cfg.batch_size
                window["samples"] += cfg.batch_size
                last_loss = loss.item()
                bar.update(task, completed=step, info=f"loss {last_loss:.4f}")

                if step % cfg.log_every == 0 or step == total_steps:
                    if held_out is not None and (step % recipe.method.held_out_every == 0 or step == total_steps):
                        stats.update(evaluate_held_out(objective, model, held_out))
                    if knn is not None and (step % cfg.knn.every == 0 or step == total_steps):
                        stats.update(knn(model))
                    if step == total_steps:
                        stats.update(objective.end_of_training_stats())
                    elapsed = time.perf_counter() - window["t0"]
                    record = {
                        "step": step,
                        "epoch": epoch,
                        "loss": round(last_loss, 6),
                        "lr": scheduler.get_last_lr()[0],
                        "samples_per_s": round(window["samples"] / elapsed, 2),
                        "data_time_frac": round(window["data"] / elapsed, 3),
                        "skipped_samples": window["skipped"],
                        **{k: round(v, 4) for k, v in stats.items()},
                    }
                    metrics.write(record)
                    log.info(
                        "step %d/%d epoch %d loss %.4f lr %.2e %.1f samples/s data %.0f%%",
                        step, total_steps, epoch, last_loss, record["lr"], record["samples_per_s"],
                        100 * record["data_time_frac"],
                    )
                    window = {"t0": time.perf_counter(), "data": 0.0, "samples": 0, "skipped": 0}
                if step % cfg.checkpoint_every == 0:
                    last_saved = checkpoint()
                if stop.requested:
                    last_saved = checkpoint()
                    metrics.close()
                    raise Interrupted(
                        f"stopped by {stop.requested} at step {step}; checkpoint {last_saved}; "
                        "run the same command with --resume auto to continue"
                    )
                if step >= total_steps:
                    break
                t_fetch = time.perf_counter()
            else:
                epoch, batch_in_epoch = epoch + 1, 0
    if last_saved is None or last_saved.name != f"step_{step}":
        last_saved = checkpoint()
    metrics.close()
    return {"run_dir": str(run_dir), "checkpoint": str(last_saved), "steps": step, "final_loss": last_loss}


def train_batch(batch: dict, frontend, data_cfg, device: torch.device) -> TrainBatch:
    """Every video and audio slot of a collated batch, augmented (video on the device when
    `data.augment.on_device`), normalised, turned into spectrograms and on the device."""
    if "video_raw" in batch:  # data.augment.on_device: pixels augmented here, after collation
        raw = batch["video_raw"].to(device, non_blocking=True)
        params = {k: v.to(device) for k, v in batch["video_params"].items()}
        video = augment_video_batch(raw, params, data_cfg.clip.size)
        video = video.view(-1, batch["video_windows"], *video.shape[1:])
    else:
        video = normalize_video(batch["video"].to(device, non_blocking=True).flatten(0, 1))
        video = video.view(*batch["video"].shape[:2], *video.shape[1:])
    waves = batch["audio"].to(device, non_blocking=True)
    spectrogram = frontend(waves.flatten(0, 1))
    spectrogram = spectrogram.view(*waves.shape[:2], *spectrogram.shape[1:])
    if "spec_masks" in batch:  # one set of masks per sample, applied to all its audio slots
        masks = {k: v.to(device) for k, v in batch["spec_masks"].items()}
        spectrogram = apply_spec_masks(spectrogram, masks)
    labels = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch["labels"].items()}
    return TrainBatch(
        video=video, audio=spectrogram, video_mask=batch["video_mask"].to(device),
        audio_mask=batch["audio_mask"].to(device), items=batch["items"].to(device), labels=labels,
    )


def training_items(recipe: Recipe):
    """Usable catalog items; the synthetic world is generated first when the recipe asks for it."""
    root = recipe.data.catalog
    if recipe.data.synthetic is not None and not (root / "catalog.sqlite").exists():
        from avcli.data.ingest import ingest_synthetic

        log.info("generating the synthetic world (%d videos) in %s", recipe.data.synthetic.videos, root)
        ingest_synthetic(recipe.data.synthetic, root)
    with Catalog(root) as catalog:
        items = catalog.items(status="ok")
    if not items:
        raise UsageError(f"{root}: the catalog has no usable items (all rejected?); see `avcli ingest`")
    return items


@torch.no_grad()
def fit_audio_frontend(frontend, dataset: ClipDataset, clips: int, device: torch.device) -> None:
    """Per-frequency statistics from `clips` clips spread over the catalog (fixed choice, independent of seed)."""
    spread = torch.linspace(0, len(dataset.items) - 1, clips).round().long().tolist()
    specs = [centred_spec(dataset.items, index, dataset.clip, seed=7919 + j) for j, index in enumerate(spread)]
    # a dataset of its own: centred clips are no sampler's kind, so a broken one is skipped, not replaced
    fitting = ClipDataset(dataset.items, dataset.clip, dataset.augment, train=dataset.train, max_consecutive_failures=1)
    waves = []
    for spec in specs:
        try:
            waves.append(fitting[spec]["audio"][0])
        except DataError:
            continue
    fitting.readers.close()  # workers fork after this: they must not inherit open decoders
    if not waves:
        raise DataError(f"none of {len(specs)} clips spread over the catalog decodes; check it with `avcli ingest stats`")
    frontend.fit(torch.stack(waves).to(device))


def _resume_point(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run (refusing to overwrite a used run directory)."""
    if resume is None:
        if run_dir.exists() and any(run_dir.iterdir()):
            if not complete_checkpoints(run_dir) and not (run_dir / "metrics.jsonl").exists():
                return None  # only files we would rewrite anyway (e.g. recipe.yaml of a run that died at start)
            raise UsageError(
                f"{run_dir}: run directory is not empty; continue it with --resume auto, "
                "or set output.run_dir to a new directory"
            )
        return None
    if resume == "auto":
        found = complete_checkpoints(run_dir)
        if not found:
            log.info("--resume auto: no checkpoint in %s yet, starting fresh", run_dir)
            return None
        return found[-1]
    return resolve_checkpoint(resume)


class _StopFlag:
    requested: str | None = None


@contextmanager
def _stop_requests():
    """SIGINT/SIGTERM set a flag; the loop checkpoints at the next step boundary and exits with code 4."""
    flag = _StopFlag()

    def handler(signum, frame):
        flag.requested = signal.Signals(signum).name

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no signal handling
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
