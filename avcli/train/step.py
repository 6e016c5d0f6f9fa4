"""The pieces of one optimiser step that the loop (and benchmarks/train_step.py) put together.

- `TrainStep`: model + objective as one module whose forward is the objective's. DDP wraps this module, because
  DDP prepares gradient synchronisation in its own forward: the objectives call the towers and heads directly,
  and their own heads (temporal classifiers, the AVTS fused classifier) must be synchronised too.
- `for_ranks`: the DDP wrapper when several processes train, the module itself otherwise.
- `BufferSnapshot`: a step whose loss is not finite is skipped, but its forward already moved state (memory
  banks, queues, batch-norm statistics); the snapshot taken before the step puts it back.
- `agree`: one small all-reduce per step in which the ranks pool their loss, whether it was finite and whether a
  stop was requested, so every rank takes the same decisions (skip, stop) at the same step.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from avcli.train.distributed import Context, all_reduce_sum


class TrainStep(nn.Module):
    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch):
        return self.objective(self.model, batch)


def for_ranks(step: TrainStep, ctx: Context) -> nn.Module:
    """DDP around the step when several processes train. Buffers are not broadcast: batch-norm statistics are
    global already (training.sync_batchnorm) or deliberately per rank, and the objectives' banks and queues are
    updated alike on every rank from gathered embeddings — broadcasting them every step would only cost time."""
    if not ctx.distributed:
        return step
    ddp = nn.parallel.DistributedDataParallel
    # newer PyTorch renames the option (the buffers are still made equal once, at construction: fine here)
    no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
                      else {"broadcast_buffers": False})
    return ddp(
        step,
        device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
        find_unused_parameters=not step.objective.uses_every_parameter,
        **no_buffer_sync,
    )


class BufferSnapshot:
    """Copies of a module's buffers, to undo what a skipped step's forward changed."""

    def __init__(self, module: nn.Module):
        self.buffers = [b for b in module.buffers() if b.numel()]
        self.saved: list[torch.Tensor] = []

    def take(self) -> None:
        if len(self.saved) != len(self.buffers):
            self.saved = [b.detach().clone() for b in self.buffers]
            return
        for saved, b in zip(self.saved, self.buffers):
            saved.copy_(b)

    @torch.no_grad()
    def restore(self) -> None:
        for saved, b in zip(self.saved, self.buffers):
            b.copy_(saved)


def agree(loss: float, finite: bool, stop: bool, ctx: Context) -> tuple[float, bool, bool]:
    """(mean loss over ranks, finite on every rank, stop requested on any rank)."""
    if not ctx.distributed:
        return loss, finite, stop
    flags = torch.tensor([loss if finite else 0.0, float(not finite), float(stop)], dtype=torch.float64,
                         device=ctx.device)
    all_reduce_sum(flags)
    any_nonfinite = bool(flags[1] > 0)
    return (math.nan if any_nonfinite else float(flags[0]) / ctx.world_size), not any_nonfinite, bool(flags[2] > 0)


def clip_gradients(parameters, max_norm: float | None) -> float | None:
    """The global gradient norm (None when clipping is off), after clipping it to `max_norm`."""
    if max_norm is None:
        return None
    return float(nn.utils.clip_grad_norm_(parameters, max_norm))
