"""The pieces of one optimiser step that the loop (and benchmarks/train_step.py) put together.

- `TrainStep`: model + objective as one module whose forward is the objective's. DDP wraps this module, because
  DDP prepares gradient synchronisation in its own forward: the objectives call the towers and heads directly,
  and their own heads (temporal classifiers, the AVTS fused classifier) must be synchronised too.
- `for_ranks`: the DDP wrapper when several processes train, the module itself otherwise.
- `BufferSnapshot`: a step whose loss is not finite is skipped, but its forward already moved state (memory
  banks, queues, batch-norm statistics); the snapshot taken before the step puts it back.
- `agree`: one small all-reduce per step in which the ranks pool their loss, whether it was finite and whether a
  stop was requested, so every rank takes the same decisions (skip, stop) at the same step; its result is the one
  value a step reads back from the device.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

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
    """What a skipped step's forward changed, put back (`take` before the step, `restore` after a skip).

    Large state is journalled by its owner, not copied: memory banks and feature queues (any module with
    `begin_journal`/`rollback`) record the rows they overwrite, B rows a step instead of the whole N×D bank — a
    copy per step would double the banks' GPU memory and read and write all of it every step. The remaining
    persistent buffers (batch-norm statistics, agreement statistics, counters) are small and are copied.
    Non-persistent buffers are constants (lookup tables) and are left alone."""

    def __init__(self, module: nn.Module):
        self.journaled = [m for m in module.modules() if hasattr(m, "begin_journal") and hasattr(m, "rollback")]
        owned = {id(b) for m in self.journaled for b in m.buffers()}
        self.buffers = [b for m in module.modules() for name, b in m.named_buffers(recurse=False)
                        if b.numel() and id(b) not in owned and name not in m._non_persistent_buffers_set]
        self.saved: list[torch.Tensor] = []

    @torch.no_grad()
    def take(self) -> None:
        for m in self.journaled:
            m.begin_journal()
        if len(self.saved) != len(self.buffers):
            self.saved = [b.detach().clone() for b in self.buffers]
            return
        for saved, b in zip(self.saved, self.buffers):
            saved.copy_(b, non_blocking=True)

    @torch.no_grad()
    def restore(self) -> None:
        for m in self.journaled:
            m.rollback()
        for saved, b in zip(self.saved, self.buffers):
            b.copy_(saved)


@dataclass
class StepOutcome:
    """What every rank knows about a step after `agree`: the mean loss over ranks, whether the loss was finite on
    every rank, whether the gradient is finite (None: not measured), whether any rank asked to stop, the global
    gradient norm (None when not measured)."""

    loss: float
    finite: bool
    grads_finite: bool | None
    stop: bool
    grad_norm: float | None


def agree(loss: torch.Tensor | float, stop: bool, ctx: Context, grad_norm: torch.Tensor | None = None) -> StepOutcome:
    """The ranks pool their step loss (a 0-d tensor on the device), its finiteness and their stop requests in one
    all-reduce, and read the result — with the gradient norm — in one transfer: the only time a training step
    waits for the device (the skip and stop decisions need it; everything else is read on logging steps)."""
    loss = torch.as_tensor(loss, dtype=torch.float64, device=ctx.device).detach().to(torch.float64)
    finite = torch.isfinite(loss)
    parts = [torch.where(finite, loss, 0.0), (~finite).to(torch.float64),
             torch.full((), float(stop), dtype=torch.float64, device=loss.device)]
    if grad_norm is not None:  # the same on every rank (DDP averaged the gradients): summed, then divided
        parts.append(grad_norm.detach().to(device=loss.device, dtype=torch.float64))
    flags = torch.stack(parts)
    if ctx.distributed:
        all_reduce_sum(flags)
    values = flags.tolist()
    world = ctx.world_size if ctx.distributed else 1
    any_nonfinite = values[1] > 0
    norm = values[3] / world if grad_norm is not None else None
    return StepOutcome(
        loss=math.nan if any_nonfinite else values[0] / world, finite=not any_nonfinite,
        grads_finite=None if norm is None else math.isfinite(norm), stop=values[2] > 0, grad_norm=norm,
    )


def clip_gradients(parameters, max_norm: float | None) -> torch.Tensor:
    """The global gradient norm as a 0-d tensor on the device (nothing is read on the host), after clipping it to
    `max_norm` (None: measured only)."""
    return nn.utils.clip_grad_norm_(parameters, math.inf if max_norm is None else max_norm)
