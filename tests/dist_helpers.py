"""Code the 2-process tests run in spawned workers (importable by name, as spawn requires)."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import torch

BATCH = 8  # the global batch: 8 clips on one process, 4 + 4 on two
STEPS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_group(rank: int, world: int, port: int):
    """What torchrun does for a worker: the variables; then avcli's own setup makes the process group."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from avcli.train import distributed

    return distributed.setup("cpu", timeout_s=60)


# ---------------------------------------------------------------------------------------------- one step, 1 vs 2


METHODS = {
    "xid": {"kind": "xid", "temperature": 0.1},
    "movies": {"kind": "movies", "temperature": 0.1},
    "xid_bank": {"kind": "xid", "temperature": 0.1, "memory_bank": {"negatives": 5}},
    "robust_xid": {"kind": "robust_xid", "temperature": 0.1, "weights": {"statistics": "ema", "start_epoch": 0},
                   "soft_targets": {"start_epoch": 0}},
    "robust_xid_bank": {"kind": "robust_xid", "temperature": 0.1, "bank_negatives": 5,
                        "weights": {"statistics": "ema", "start_epoch": 0}, "soft_targets": {"start_epoch": 0}},
    "temporal": {"kind": "temporal", "order": 0.0, "extra_positives": 1, "queue_size": 8, "head_hidden": 16},
    "temporal_natural": {"kind": "temporal", "order": 0.0, "extra_positives": 1, "queue_size": 8, "head_hidden": 16,
                         "video_audio_clip": "natural"},
    "temporal_both": {"kind": "temporal", "order": 0.0, "extra_positives": 1, "queue_size": 8, "head_hidden": 16,
                      "video_audio_clip": "both"},
    "avts": {"kind": "avts", "loss": "fused", "batch_negatives": True, "fused_hidden": 16, "held_out_pairs": 0},
}


# every method with the towers in float64 (so that round-off cannot flip a max-pool's choice between two runs and
# the comparison shows the maths), and the target, xid and movies, as they train: in float32
CASES = [(name, torch.float64) for name in METHODS] + [("xid", torch.float32), ("movies", torch.float32)]


def _recipe(method: dict):
    from avcli.recipe import recipe_from_dict

    sampler = {"temporal": {"kind": "temporal", "speeds": [1, 2]}, "avts": {"kind": "sync_pairs"},
               "movies": {"kind": "hierarchical", "clips_per_title": 2}}.get(method["kind"], {"kind": "uniform"})
    return recipe_from_dict({
        "data": {"catalog": "/nonexistent", "clip": {"frames": 4, "fps": 8, "size": 32, "audio_seconds": 1.0},
                 "sampler": sampler},
        "model": {"video": {"name": "tiny_r2plus1d", "width": 8}, "audio": {"name": "tiny_conv2d", "width": 8},
                  "projector": {"hidden_dim": 32, "out_dim": 16}},
        "method": method,
        "training": {"steps": STEPS, "batch_size": 4, "seed": 0},
        "output": {"run_dir": "/nonexistent"},
    })


def _global_batch(method: str, step: int):
    """Step `step`'s global batch (the same on every process; each takes its rows)."""
    from avcli.train.objectives import TrainBatch

    g = torch.Generator().manual_seed(100 + step)
    temporal = METHODS[method]["kind"] == "temporal"
    windows = 3 if temporal else 1
    video_mask = torch.ones(BATCH, windows, dtype=torch.bool)
    labels = {}
    if temporal:
        video_mask[5, 1] = False  # ranks hold different numbers of usable anchor rows
        labels = {"speed_class": torch.randint(0, 2, (BATCH,), generator=g),
                  "reverse": torch.randint(0, 2, (BATCH,), generator=g),
                  "order": torch.randint(0, 2, (BATCH,), generator=g),
                  "av_order": torch.randint(0, 2, (BATCH,), generator=g)}
    items = torch.arange(BATCH).repeat(windows, 1).t().contiguous()
    if method == "avts":  # slot 0: the clip, items[:, 1]: where its sound comes from (another item: a negative)
        sync = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0])
        items = torch.stack([torch.arange(BATCH), torch.where(sync.bool(), torch.arange(BATCH),
                                                              (torch.arange(BATCH) + 3) % BATCH)], dim=1)
        labels = {"sync": sync, "negative": ["none" if y else "easy" for y in sync.tolist()]}
    return TrainBatch(
        video=torch.randn(BATCH, windows, 3, 4, 32, 32, generator=g),
        audio=torch.randn(BATCH, windows, 1, 64, 32, generator=g),
        video_mask=video_mask, audio_mask=torch.ones(BATCH, windows, dtype=torch.bool), items=items, labels=labels,
    )


def run_steps(method: str, ctx, dtype: torch.dtype = torch.float32) -> dict:
    """STEPS optimiser steps (plain SGD, so the update is −lr × the gradient) on the global batches, this rank's
    rows; returns the agreed losses, the parameter update of the first step, the gradients of the last step and
    the objective's state at the end."""
    from avcli.models import build_model
    from avcli.train.objectives import build_objective
    from avcli.train.step import TrainStep, agree, for_ranks
    from avcli.train.sync_batchnorm import convert_batchnorm

    recipe = _recipe(METHODS[method])
    items = [SimpleNamespace(item_id=f"i{k}", title_id=f"t{k // 2}", extra={"faulty": k == 3}) for k in range(BATCH)]
    torch.manual_seed(0)
    model = build_model(recipe.model)
    objective = build_objective(recipe, model, items)
    if ctx.distributed:
        model, objective = convert_batchnorm(model, ctx.device), convert_batchnorm(objective, ctx.device)
    for tower in (model.video, model.audio):  # the towers in `dtype`, heads and losses in float32
        tower.to(dtype)
        tower.register_forward_hook(lambda module, args, out: out.float())
    runner = for_ranks(TrainStep(model, objective), ctx)
    parameters = [*model.parameters(), *objective.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=0.01)
    initial = [p.detach().clone() for p in parameters]
    rows = slice(ctx.rank * BATCH // ctx.world_size, (ctx.rank + 1) * BATCH // ctx.world_size)
    objective.on_epoch_start(0)
    losses = []
    for step in range(STEPS):
        batch = _global_batch(method, step).rows(rows)
        batch.video, batch.audio = batch.video.to(dtype), batch.audio.to(dtype)
        loss, _ = runner(batch)
        loss.backward()
        losses.append(agree(loss.detach(), False, ctx).loss)
        grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in parameters]
        optimizer.step()
        optimizer.zero_grad()
        if step == 0:
            first_update = [p.detach() - p0 for p, p0 in zip(parameters, initial)]
    return {"losses": losses, "grads": grads, "first_update": first_update,
            "state": {k: v.clone() for k, v in objective.state_dict().items() if isinstance(v, torch.Tensor)}}


def sampler_shares(ctx) -> dict:
    """Every spec key each rank's hierarchical and sync-pair samplers hand out in an epoch, as the loop builds
    them (rank and world size from the process group)."""
    from avcli.data.catalog import CatalogItem
    from avcli.data.samplers import build_sampler
    from avcli.recipe.schema import Data
    from avcli.train import distributed

    items = [CatalogItem(item_id=f"i{i}", path=f"/m/{i}.mp4", status="ok", duration_s=6.0 + i % 5,
                         title_id=f"t{i // 3}") for i in range(36)]
    shares = {}
    for sampler in ({"kind": "hierarchical", "clips_per_title": 2}, {"kind": "sync_pairs", "switch_epoch": 0}):
        data = Data(catalog="/nonexistent", sampler=sampler, clips_per_item=2)
        built = build_sampler(data, items, 4, seed=5, rank=ctx.rank, world_size=ctx.world_size)
        built.set_epoch(1)
        mine = [spec.windows for batch in built for spec in batch]
        shares[sampler["kind"]] = distributed.gather_objects(mine)
    return shares


def equivalence_worker(rank: int, world: int, port: int, out: str) -> None:
    ctx = join_group(rank, world, port)
    from avcli.train import distributed

    try:
        results = {case: run_steps(case[0], ctx, case[1]) for case in CASES}
        results["samplers"] = sampler_shares(ctx)
        results["ctx"] = (ctx.rank, ctx.world_size, ctx.backend)
        if rank == 0:
            torch.save(results, out)
    finally:
        distributed.teardown(ctx)


# ---------------------------------------------------------------------------------------------- a failing rank


def failing_rank_worker(rank: int, world: int, port: int, recipe_path: str, queue) -> None:
    """Trains; rank 1's data loading breaks at its third batch. Reports (rank, exception type, message)."""
    join_group(rank, world, port)
    import avcli.train.loop as loop
    from avcli.data.clip_dataset import DataError
    from avcli.recipe import load_recipe

    calls = {"n": 0}
    original = loop.train_batch

    def breaking(*args, **kwargs):
        calls["n"] += 1
        if rank == 1 and calls["n"] == 3:
            raise DataError("rank 1: a clip that cannot be decoded (injected)")
        return original(*args, **kwargs)

    loop.train_batch = breaking
    try:
        loop.pretrain(load_recipe(recipe_path))
        queue.put((rank, None, "finished"))
    except Exception as exc:
        queue.put((rank, type(exc).__name__, str(exc)))


# ---------------------------------------------------------------------------------------------- collectives that must pair up


def _bn_case(rows: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, 3, 5, generator=g, dtype=torch.float64) * 2 + 1).to(dtype)


def global_batchnorm_worker(rank: int, world: int, port: int, out: str) -> None:
    """GlobalBatchNorm with ranks holding different row counts — one rank none at all, in bf16 as under autocast
    — against one plain BatchNorm over the concatenated rows; and a temporal step under bf16 autocast in which
    rank 1 holds no video–video anchor (its reversed-clip negatives run the towers on zero rows)."""
    ctx = join_group(rank, world, port)
    from avcli.train import distributed
    from avcli.train.sync_batchnorm import convert_batchnorm

    results = {}
    try:
        for name, counts, dtype in (("uneven_fp64", (3, 5), torch.float64), ("empty_bf16", (4, 0), torch.bfloat16)):
            torch.manual_seed(0)
            bn = convert_batchnorm(torch.nn.BatchNorm1d(3).to(torch.float64 if dtype == torch.float64 else
                                                                torch.float32))
            with torch.no_grad():
                bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
                bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
            x = _bn_case(counts[rank], dtype, seed=rank).requires_grad_(True)
            y = bn(x)
            upstream = _bn_case(counts[rank], torch.float64, seed=10 + rank).to(y.dtype)
            (y.double() * upstream.double()).sum().backward()
            results[name] = {"y": y.detach(), "grad_x": x.grad, "grad_w": bn.weight.grad.clone(),
                             "grad_b": bn.bias.grad.clone(), "running_mean": bn.running_mean.clone(),
                             "running_var": bn.running_var.clone(), "y_dtype": y.dtype}
        results["temporal_empty_rank"] = temporal_step_with_an_empty_rank(ctx)
        results["gpu_of_caller_group"] = gpu_of_a_group_made_without_local_rank()
        gathered = distributed.gather_objects(results)
        if rank == 0:
            torch.save(gathered, out)
    finally:
        distributed.teardown(ctx)


def temporal_step_with_an_empty_rank(ctx) -> float:
    """One temporal step under bf16 autocast where rank 1's rows have no second window: the video–video term
    still counts ≥ 2 pairs globally, so rank 1 encodes zero reversed clips. Returns the agreed loss."""
    from avcli.models import build_model
    from avcli.train.objectives import build_objective
    from avcli.train.step import TrainStep, agree, for_ranks
    from avcli.train.sync_batchnorm import convert_batchnorm

    recipe = _recipe(METHODS["temporal"])
    items = [SimpleNamespace(item_id=f"i{k}", title_id=f"t{k // 2}", extra={}) for k in range(BATCH)]
    torch.manual_seed(0)
    model = build_model(recipe.model)
    objective = build_objective(recipe, model, items)
    model, objective = convert_batchnorm(model), convert_batchnorm(objective)
    runner = for_ranks(TrainStep(model, objective), ctx)
    batch = _global_batch("temporal", 0)
    batch.video_mask[BATCH // 2:, 1] = False  # rank 1's half: no second window anywhere
    rows = slice(ctx.rank * BATCH // ctx.world_size, (ctx.rank + 1) * BATCH // ctx.world_size)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = runner(batch.rows(rows))
    loss.backward()
    return agree(loss.detach(), False, ctx).loss


def gpu_of_a_group_made_without_local_rank() -> str:
    """The device `setup` picks on a machine with 2 (pretend) GPUs when the caller made the process group and set
    no LOCAL_RANK: each rank's own GPU, from the host names of the ranks — not cuda:0 for both."""
    from avcli.train import distributed

    os.environ.pop("LOCAL_RANK", None)
    saved = {name: getattr(torch.cuda, name) for name in ("is_available", "device_count", "set_device")}
    torch.cuda.is_available, torch.cuda.device_count = (lambda: True), (lambda: 2)
    torch.cuda.set_device = lambda device: None
    try:
        return str(distributed.setup("auto", timeout_s=60).device)
    finally:
        for name, fn in saved.items():
            setattr(torch.cuda, name, fn)
