"""The pretraining loop: one function to read top to bottom.

recipe → catalog items → sampler + clip dataset → model + audio front end → objective → optimiser steps,
with metrics.jsonl, checkpoints every `checkpoint_every` steps and at the end, `--resume auto`, and a clean stop
(checkpoint + exit code 4) on SIGINT/SIGTERM/SIGUSR1.

Under torchrun (or srun) every process runs this same function (DESIGN.md → Distributed): each takes its share
of every global batch from the sampler, DDP averages gradients, the objectives gather negatives across ranks,
rank 0 alone writes files while the others wait at a barrier, and the ranks agree once per step (one small
all-reduce) on the loss, on skipping a non-finite step and on stopping. On one process none of that costs a
thing: the collectives are no-ops and the model is not wrapped.
"""

from __future__ import annotations

import logging
import math
import signal
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from avcli.data.catalog import Catalog
from avcli.data.audio_transforms import apply_spec_masks
from avcli.data.clip_dataset import ClipDataset, DataError, collate_samples
from avcli.data.sample_spec import SampleSpec, Window
from avcli.data.samplers import build_sampler
from avcli.data.video_transforms import augment_video_batch, normalize_video, yuv420_to_rgb
from avcli.errors import AvcliError, Interrupted, UsageError
from avcli.log import get_logger, progress
from avcli.media.audio_features import build_audio_frontend
from avcli.models import build_model
from avcli.recipe import Recipe, recipe_to_yaml, save_recipe
from avcli.stop_signals import data_loader
from avcli.train import distributed
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
from avcli.train.observe import Throughput, log_line, require_tensorboard, tensorboard_writer, write_scalars
from avcli.train.optim import build_optimizer, build_scheduler
from avcli.train.runtime import (autocast, compile_encoders, describe_precision, determinism, grad_scaler,
                                 resolve_precision, seed_everything, use_channels_last)
from avcli.train.step import BufferSnapshot, TrainStep, agree, clip_gradients, for_ranks
from avcli.train.sync_batchnorm import convert_batchnorm

log = get_logger("train")


def pretrain(recipe: Recipe, resume: str | None = None) -> dict:
    """Train as the recipe says; returns a summary (run dir, last checkpoint, final loss, steps). Every process of
    a torchrun/srun job calls this; the process group is created here (and left at the end) unless the caller
    made one."""
    cfg = recipe.training
    ctx = distributed.setup(cfg.device, cfg.dist_timeout_s)
    clean = False
    try:
        with determinism(cfg.deterministic, ctx.device):
            summary = _train(recipe, resume, ctx)
        clean = True
        return summary
    except Interrupted:
        clean = True
        raise
    except RuntimeError as exc:  # a collective that failed because another rank did: say so in one sentence
        failure = distributed.peer_failure(exc, ctx) if ctx.distributed else None
        if failure is None:
            raise
        raise failure from exc
    finally:
        distributed.teardown(ctx, clean)


def _train(recipe: Recipe, resume: str | None, ctx: distributed.Context) -> dict:
    cfg = recipe.training
    run_dir = recipe.output.run_dir
    device = ctx.device
    precision = resolve_precision(device, cfg.precision)
    if not ctx.is_main:  # one voice per job: the other ranks only warn
        logging.getLogger("avcli").setLevel(max(logging.getLogger("avcli").level, logging.WARNING))
    resume_from = distributed.on_main(lambda: _prepare_run_dir(recipe, resume))
    recipe_yaml = recipe_to_yaml(recipe)

    seed_everything(cfg.seed)  # the same initial weights on every rank
    if ctx.distributed:  # the synthetic world, when the recipe asks for it, is generated once, by rank 0
        distributed.on_main(lambda: _generate_world(recipe))
    items = training_items(recipe)
    model = build_model(recipe.model).to(device)
    frontend = build_audio_frontend(recipe.data.audio, recipe.data.clip.sample_rate).to(device)
    try:
        objective = build_objective(recipe, model, items).to(device)
    except ValueError as exc:
        raise UsageError(f"method: {exc}") from None
    if ctx.distributed:
        if cfg.sync_batchnorm:  # the global batch's statistics, as one process computes them
            model, objective = convert_batchnorm(model, device), convert_batchnorm(objective, device)
        seed_everything(cfg.seed + ctx.rank)  # whatever is random from here on differs between ranks
    if cfg.channels_last:
        use_channels_last(model)

    try:
        sampler = build_sampler(recipe.data, items, cfg.batch_size, cfg.seed, ctx.rank, ctx.world_size)
    except ValueError as exc:
        raise UsageError(f"data.sampler: {exc}") from None
    dataset = ClipDataset(
        items, recipe.data.clip, recipe.data.augment, train=True, replacement=sampler.replacement,
        max_consecutive_failures=recipe.data.max_consecutive_failures,
        audio_speed=getattr(recipe.data.sampler, "audio_speed", "resample"),
    )
    accum = cfg.grad_accum_steps
    steps_per_epoch = len(sampler) // accum
    batches_per_epoch = steps_per_epoch * accum  # a tail too short for a whole optimiser step is skipped
    if steps_per_epoch == 0:
        raise UsageError(
            f"training.batch_size={cfg.batch_size} × {ctx.world_size} process(es) × grad_accum_steps={accum} is "
            f"larger than one epoch ({len(items)} items × {recipe.data.clips_per_item} clips); lower them or raise "
            "data.clips_per_item"
        )
    total_steps = cfg.steps or cfg.epochs * steps_per_epoch
    # the objective's own heads (temporal classifiers, AVTS fused classifier) train with the encoders
    parameters = [*model.parameters(), *objective.parameters()]
    optimizer = build_optimizer(parameters, recipe.optimizer)
    scheduler = build_scheduler(optimizer, total_steps, recipe.schedule)
    scaler = grad_scaler(device, precision)  # fp16 only; a pass-through otherwise

    step, epoch, batch_in_epoch, samples_seen, nonfinite_steps = 0, 0, 0, 0, 0
    stats_clips = None  # how many audio windows the normalisation statistics were fitted on
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
        if scaler.is_enabled() and "grad_scaler" in state:
            scaler.load_state_dict(state["grad_scaler"])
        step, epoch, samples_seen = state["step"], state["epoch"], state["samples_seen"]
        batch_in_epoch = _position_for(state, ctx, accum)
        nonfinite_steps = state.get("nonfinite_steps", 0)
        stats_clips = state.get("audio_stats_clips")
        _restore_rng(state, ctx, cfg.seed)
        log.info("resuming from %s (step %d, epoch %d)", resume_from, step, epoch)
    else:
        # one fit, by rank 0, copied to the others: every rank must normalise audio identically
        stats_clips = distributed.on_main(lambda: fit_audio_frontend(frontend, dataset, recipe.data.audio.stats_clips))
        distributed.broadcast_tensors(frontend.buffers())
        log.info("audio statistics fitted on %d windows spread over the catalog", stats_clips)

    loader = data_loader(  # its workers leave SIGINT/SIGTERM/SIGUSR1 to this process (a group signal too)
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_samples,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        pin_memory=device.type == "cuda",
    )

    def checkpoint() -> Path:
        rngs = distributed.gather_objects(rng_state(device))  # every rank's streams, for an exact resume
        if ctx.is_main:
            state = {
                "step": step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "samples_seen": samples_seen,
                "world_size": ctx.world_size,
                "nonfinite_steps": nonfinite_steps,
                "audio_stats_clips": stats_clips,
                "optimizer": optimizer.state_dict(),
                "objective": objective.state_dict(),
                "scheduler": scheduler.state_dict(),
                **({"grad_scaler": scaler.state_dict()} if scaler.is_enabled() else {}),
                "rng": rngs[0],
                "rng_per_rank": rngs,
            }
            save_checkpoint(run_dir, step, model, frontend, state, recipe_yaml, cfg.keep_last_n)
        distributed.barrier()  # the others wait: nobody exits (or gets killed by torchrun) mid-write
        return Path(run_dir) / "checkpoints" / f"step_{step}"

    log.info(
        "training %s on %d items, %d steps (%d per epoch), batch %d × %d process(es) × %d accumulation, %s",
        recipe.method.kind, len(items), total_steps, steps_per_epoch, cfg.batch_size, ctx.world_size, accum,
        describe_precision(precision, device),
    )
    def make_batch(collated: dict) -> TrainBatch:
        return train_batch(collated, frontend, recipe.data, device)

    # health measurements and files are rank 0's business
    held_out, knn, metrics, board = distributed.on_main(lambda: (
        held_out_batch(objective, sampler, dataset, make_batch, recipe.method),
        KNNMonitor(cfg.knn, dataset, make_batch) if cfg.knn is not None else None,
        MetricsWriter(run_dir / "metrics.jsonl", resume_step=step if resume_from is not None else None),
        tensorboard_writer(run_dir, step if resume_from is not None else None) if cfg.tensorboard else None,
    ), share=False) or (None, None, None, None)

    runner = for_ranks(TrainStep(model, objective), ctx)
    if cfg.compile:
        compile_encoders(model)
    snapshot = BufferSnapshot(runner)
    model.train()
    objective.train()
    last_saved, last_loss = resume_from if resume_from is not None and step >= total_steps else None, None
    consecutive_nonfinite = 0
    window = Throughput(ctx.world_size)
    skipped_samples = 0
    with _stop_requests() as stop, progress(transient=False, enabled=ctx.is_main) as bar:
        task = bar.add_task("pretrain", total=total_steps, completed=step)
        while step < total_steps:
            if batch_in_epoch >= batches_per_epoch:  # resumed from a checkpoint written at the end of an epoch
                epoch, batch_in_epoch = epoch + 1, 0
            sampler.set_epoch(epoch, start_batch=batch_in_epoch)
            if batch_in_epoch == 0:  # mid-epoch resumes keep the epoch's state from the checkpoint
                objective.on_epoch_start(epoch)
            micro = 0
            window.waiting()
            for batch in loader:
                window.arrived()
                if micro == 0:  # a new optimiser step begins
                    snapshot.take()
                    step_loss = torch.zeros((), device=device)
                inputs = train_batch(batch, frontend, recipe.data, device)
                skipped_samples += int(batch["skipped"].numpy().sum())  # host data: no device read
                micro += 1
                # gradients are averaged across ranks only on the last micro-batch of a step
                sync = micro == accum or not ctx.distributed
                with nullcontext() if sync else runner.no_sync():
                    with autocast(device, precision):
                        loss, stats = runner(inputs)
                    # every rank runs backward, finite or not: DDP's collectives pair up
                    scaler.scale(loss / accum).backward()
                step_loss = step_loss + loss.detach().float() / accum  # stays on the device
                batch_in_epoch += 1
                samples_seen += cfg.batch_size * ctx.world_size
                if micro < accum:
                    window.waiting()
                    continue

                requested = stop.requested  # read once per step
                measure = cfg.grad_clip is not None or scaler.is_enabled()
                if measure:
                    scaler.unscale_(optimizer)  # true gradients for the norm and the clipping (fp16)
                outcome = agree(step_loss, bool(requested), ctx, clip_gradients(parameters, cfg.grad_clip)
                                if measure else None)  # the step's one read from the device
                finite = outcome.finite and outcome.grads_finite is not False
                if finite:
                    scaler.step(optimizer)  # optimizer.step(), unless fp16 gradients overflowed
                    consecutive_nonfinite = 0
                else:  # skipped: no update, and the forward's changes to banks, queues, BN statistics undone
                    snapshot.restore()
                    if scaler.is_enabled() and outcome.finite:  # fp16 overflow: the scaler lowers its scale
                        log.debug("step %d: fp16 gradients overflowed at scale %g, step skipped", step + 1,
                                  scaler.get_scale())
                    else:
                        nonfinite_steps += 1
                        consecutive_nonfinite += 1
                        log.warning("step %d: non-finite loss or gradient, step skipped (%d in a row)",
                                    step + 1, consecutive_nonfinite)
                if measure:
                    scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step_loss, grad_norm, stop_now = outcome.loss, outcome.grad_norm, outcome.stop
                step, micro = step + 1, 0
                window.stepped(cfg.batch_size * ctx.world_size * accum)
                if consecutive_nonfinite >= cfg.max_nonfinite_steps:
                    raise AvcliError(
                        f"the loss or gradient was not finite for {consecutive_nonfinite} steps in a row (up to step "
                        f"{step}, training.max_nonfinite_steps={cfg.max_nonfinite_steps}); lower optimizer.lr, set "
                        "training.grad_clip, or check the data"
                    )
                last_loss = step_loss if finite else last_loss
                bar.update(task, completed=step, info=f"loss {step_loss:.4f}")

                if step % cfg.log_every == 0 or step == total_steps:
                    stats, skipped = _pooled(stats, skipped_samples, ctx)  # a collective: every rank comes here
                    if ctx.is_main:
                        if held_out is not None and (step % recipe.method.held_out_every == 0 or step == total_steps):
                            stats.update(evaluate_held_out(objective, model, held_out))
                        if knn is not None and (step % cfg.knn.every == 0 or step == total_steps):
                            stats.update(knn(model))
                        if step == total_steps:
                            stats.update(objective.end_of_training_stats())
                        record = {
                            "step": step,
                            "epoch": epoch,
                            "loss": round(step_loss, 6) if finite else None,
                            "lr": scheduler.get_last_lr()[0],
                            **window.figures(device),
                            "skipped_samples": skipped,
                            "nonfinite_steps": nonfinite_steps,
                            **({"grad_norm": round(grad_norm, 4)} if grad_norm is not None and
                               cfg.grad_clip is not None else {}),
                            **({"loss_scale": scaler.get_scale()} if scaler.is_enabled() else {}),
                            **{k: round(v, 4) for k, v in read_stats(stats).items()},
                        }
                        metrics.write(record)
                        if board is not None:
                            write_scalars(board, record)
                        log.info(log_line({**record, "loss": step_loss}, total_steps))
                    window.reset()
                    skipped_samples = 0
                if step % cfg.checkpoint_every == 0:
                    last_saved = checkpoint()
                if stop_now:
                    if last_saved is None or last_saved.name != f"step_{step}":
                        last_saved = checkpoint()
                    _close(metrics, board)
                    raise Interrupted(
                        f"stopped by {requested or 'a stop request on another rank'} at step {step}; checkpoint "
                        f"{last_saved}; run the same command with --resume auto to continue"
                    )
                if step >= total_steps or batch_in_epoch >= batches_per_epoch:
                    break
                window.waiting()
            if step < total_steps:
                epoch, batch_in_epoch = epoch + 1, 0
    if last_saved is None or last_saved.name != f"step_{step}":
        last_saved = checkpoint()
    _close(metrics, board)
    return {"run_dir": str(run_dir), "checkpoint": str(last_saved), "steps": step, "final_loss": last_loss,
            "world_size": ctx.world_size}


def read_stats(stats: dict) -> dict:
    """A step's health figures as floats, read from the device in one transfer (objectives keep them as 0-d
    tensors so that steps without a log line never wait for the device). NaN means "not measured in this batch"
    (e.g. the accuracy on hard pairs of a batch without any): such keys are left out."""
    tensors = {k: v for k, v in stats.items() if isinstance(v, torch.Tensor)}
    values = dict(stats)
    if tensors:
        read = torch.stack([v.detach().reshape(()).to(torch.float64) for v in tensors.values()]).tolist()
        values.update(zip(tensors, read))
    return {k: float(v) for k, v in values.items() if not math.isnan(float(v))}


def _pooled(stats: dict, skipped: int, ctx: distributed.Context) -> tuple[dict, int]:
    """Health figures averaged over ranks (a key some ranks lack, e.g. the accuracy on hard pairs of a batch
    without any, is averaged over the ranks that have it) and skipped samples summed."""
    stats = read_stats(stats)
    if not ctx.distributed:
        return stats, skipped
    pooled: dict[str, list[float]] = {}
    total = 0
    for rank_stats, rank_skipped in distributed.gather_objects((stats, skipped)):
        total += rank_skipped
        for key, value in rank_stats.items():
            pooled.setdefault(key, []).append(value)
    return {k: sum(v) / len(v) for k, v in pooled.items()}, total


def _close(metrics, board) -> None:
    if metrics is not None:
        metrics.close()
    if board is not None:
        board.close()


def _prepare_run_dir(recipe: Recipe, resume: str | None) -> Path | None:
    """Rank 0: the checkpoint to resume from (refusing a used run directory), and the run directory made."""
    run_dir = recipe.output.run_dir
    resume_from = _resume_point(run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_recipe(recipe, run_dir / "recipe.yaml")
    if recipe.training.tensorboard:  # a missing package is a usage error before any work, not after it
        require_tensorboard()
    return resume_from


def _position_for(state: dict, ctx: distributed.Context, accum: int) -> int:
    """This rank's batch index in the epoch. A run resumed on another number of processes keeps the global
    position (rounded down to a whole step; a few batches may be seen twice) but not the exact losses."""
    old_world = int(state.get("world_size", 1))
    position = int(state["batch_in_epoch"])
    if old_world == ctx.world_size:
        return position
    log.warning("the checkpoint was written by %d process(es), this run has %d: training continues from the same "
                "global position, but the losses will not repeat an uninterrupted run exactly",
                old_world, ctx.world_size)
    return position * old_world // ctx.world_size // accum * accum


def _restore_rng(state: dict, ctx: distributed.Context, seed: int) -> None:
    per_rank = state.get("rng_per_rank")
    if per_rank is not None and len(per_rank) == ctx.world_size:
        set_rng_state(per_rank[ctx.rank], ctx.device)
    elif ctx.rank == 0:
        set_rng_state(state["rng"], ctx.device)
    else:  # a rank the checkpoint has no streams for: a fresh stream of its own
        seed_everything(seed + ctx.rank + 7919 * int(state["step"]))


def train_batch(batch: dict, frontend, data_cfg, device: torch.device) -> TrainBatch:
    """Every video and audio slot of a collated batch, augmented (video on the device when
    `data.augment.on_device`), normalised, turned into spectrograms and on the device.

    Nothing here waits for the device: copies are non-blocking (from pinned memory on CUDA), the augmentation
    parameters stay on the CPU where `augment_video_batch` takes its per-sample decisions, and the batch keeps the
    loader's CPU masks and labels (`TrainBatch.host`) for the decisions and row indices objectives take on the
    host. Masks and labels are copied even on a CPU run, so that the device copies are never the host ones."""
    def to_device(x: torch.Tensor) -> torch.Tensor:
        return x.to(device, non_blocking=True, copy=True)

    if "video_raw" in batch or "video_luma" in batch:  # data.augment.on_device: pixels augmented here
        if "video_luma" in batch:  # the workers sent decoded YUV planes: colour conversion here too
            raw = yuv420_to_rgb(batch["video_luma"].to(device, non_blocking=True),
                                batch["video_chroma"].to(device, non_blocking=True))
        else:
            raw = batch["video_raw"].to(device, non_blocking=True)
        video = augment_video_batch(raw, batch["video_params"], data_cfg.clip.size)
        video = video.view(-1, batch["video_windows"], *video.shape[1:])
    else:
        video = normalize_video(batch["video"].to(device, non_blocking=True).flatten(0, 1))
        video = video.view(*batch["video"].shape[:2], *video.shape[1:])
    waves = batch["audio"].to(device, non_blocking=True)
    spectrogram = frontend(waves.flatten(0, 1))
    spectrogram = spectrogram.view(*waves.shape[:2], *spectrogram.shape[1:])
    if "spec_masks" in batch:  # one set of masks per sample, applied to all its audio slots
        masks = {k: to_device(v) for k, v in batch["spec_masks"].items()}
        spectrogram = apply_spec_masks(spectrogram, masks)
    labels = {k: to_device(v) if isinstance(v, torch.Tensor) else v for k, v in batch["labels"].items()}
    host = {"video_mask": batch["video_mask"], "audio_mask": batch["audio_mask"], "labels": batch["labels"]}
    return TrainBatch(
        video=video, audio=spectrogram, video_mask=to_device(batch["video_mask"]),
        audio_mask=to_device(batch["audio_mask"]), items=to_device(batch["items"]), labels=labels, host=host,
    )


def training_items(recipe: Recipe):
    """Usable catalog items; the synthetic world is generated first when the recipe asks for it."""
    root = recipe.data.catalog
    _generate_world(recipe)
    with Catalog(root) as catalog:
        items = catalog.items(status="ok")
    if not items:
        raise UsageError(f"{root}: the catalog has no usable items (all rejected?); see `avcli ingest`")
    return items


def _generate_world(recipe: Recipe) -> None:
    """The synthetic world, when the recipe asks for it and the catalog does not exist yet."""
    root = recipe.data.catalog
    if recipe.data.synthetic is not None and not (root / "catalog.sqlite").exists():
        from avcli.data.ingest import ingest_synthetic

        log.info("generating the synthetic world (%d videos) in %s", recipe.data.synthetic.videos, root)
        ingest_synthetic(recipe.data.synthetic, root)


def stats_windows(items, clip, clips: int) -> list[SampleSpec]:
    """`clips` audio-only windows spread over the catalog, independent of the seed: with fewer clips than items,
    items spread evenly, one centred window each; with more, every item in turn, its windows spread evenly along
    it (a short catalog of long videos still gives `clips` different windows)."""
    n = len(items)
    if clips <= n:
        picks = [(index, 0, 1) for index in torch.linspace(0, n - 1, clips).round().long().tolist()]
    else:
        per_item = [clips // n + (1 if k < clips % n else 0) for k in range(n)]
        picks = [(index, j, count) for index, count in enumerate(per_item) for j in range(count)]
    specs = []
    for k, (index, j, count) in enumerate(picks):
        room = max(float(items[index].duration_s or 0.0) - clip.audio_seconds, 0.0)
        start = room * (j + 0.5) / count
        specs.append(SampleSpec((Window(index, None, start),), seed=7919 + k, kind="centred"))
    return specs


@torch.no_grad()
def fit_audio_frontend(frontend, dataset: ClipDataset, clips: int) -> int:
    """Per-frequency statistics from `clips` audio windows spread over the catalog (`stats_windows`; only the
    sound is decoded), streamed through the front end on its own device; returns how many windows decoded."""
    specs = stats_windows(dataset.items, dataset.clip, clips)
    # a dataset of its own: these windows are no sampler's kind, so a broken one is skipped, not replaced
    fitting = ClipDataset(dataset.items, dataset.clip, dataset.augment, train=False, max_consecutive_failures=1)

    def decoded():
        for spec in specs:
            try:
                yield fitting[spec]["audio"][0]
            except DataError:
                continue

    waves = list(decoded())
    fitting.readers.close()  # workers fork after this: they must not inherit open decoders
    if not waves:
        raise DataError(f"none of {len(specs)} clips spread over the catalog decodes; check it with `avcli ingest stats`")
    frontend.fit(waves)
    return len(waves)


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
    """SIGINT, SIGTERM (torchrun forwards it; Slurm sends it at preemption and time limit) and SIGUSR1 (Slurm's
    `--signal=USR1@SECONDS` warning) set a flag; the loop checkpoints at the next step boundary and exits with
    code 4. With several processes a flag on any rank stops every rank at the same step."""
    flag = _StopFlag()

    def handler(signum, frame):
        flag.requested = signal.Signals(signum).name

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no signal handling
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            # None: a handler installed by C code, which Python cannot reinstate; the default is the nearest
            signal.signal(sig, signal.SIG_DFL if old is None else old)
