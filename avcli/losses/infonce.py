"""Symmetric cross-modal InfoNCE (METHODS.md §1, in-batch form).

Row i of `v` and row i of `a` are a positive pair; every other row of the other modality is a negative.
logits = v·aᵀ/τ; the loss is the mean of the video→audio and audio→video cross-entropies.

`infonce_local` is one process's share of the same loss when the batch is spread over several processes
(open_clip's "local loss"): this process's rows are the queries, every process's rows the candidates, and the
label of local row i is `offset + i` (`arange(B) + B·rank` for equal shares). The mean of the shares over
processes is `infonce` of the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avcli.losses.precision import float32_loss


@float32_loss
def infonce(v: torch.Tensor, a: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over L2-normalised embeddings `v`, `a` of shape B×D; returns a scalar."""
    if v.shape != a.shape or v.dim() != 2:
        raise ValueError(f"infonce expects two B×D tensors of one shape, got {tuple(v.shape)} and {tuple(a.shape)}")
    logits = v @ a.t() / temperature
    targets = torch.arange(v.shape[0], device=v.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


@float32_loss
def infonce_local(v: torch.Tensor, a: torch.Tensor, v_all: torch.Tensor, a_all: torch.Tensor, offset: int,
                  temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of the local rows `v`, `a` (B×D) against the candidates of the whole batch `v_all`,
    `a_all` (N×D, the local rows at `offset`): ½(mean_i CE(v_i·a_allᵀ/τ, offset+i) + mean_i CE(a_i·v_allᵀ/τ,
    offset+i)); a scalar."""
    if v.shape != a.shape or v.dim() != 2 or v_all.shape != a_all.shape or v_all.shape[1:] != v.shape[1:]:
        raise ValueError(f"infonce_local expects B×D local and N×D global tensors, got {tuple(v.shape)}, "
                         f"{tuple(a.shape)}, {tuple(v_all.shape)}, {tuple(a_all.shape)}")
    targets = torch.arange(v.shape[0], device=v.device) + offset
    return 0.5 * (F.cross_entropy(v @ a_all.t() / temperature, targets)
                  + F.cross_entropy(a @ v_all.t() / temperature, targets))


@float32_loss
def retrieval_accuracy(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose nearest other-modality row (both directions) is its own pair: a health metric, as a
    0-d tensor on the embeddings' device (read it on logging steps only)."""
    with torch.no_grad():
        sim = v @ a.t()
        targets = torch.arange(v.shape[0], device=v.device)
        hits = (sim.argmax(1) == targets).float().mean() + (sim.argmax(0) == targets).float().mean()
    return hits / 2
