"""Symmetric cross-modal InfoNCE (METHODS.md §1, in-batch form).

Row i of `v` and row i of `a` are a positive pair; every other row of the other modality is a negative.
logits = v·aᵀ/τ; the loss is the mean of the video→audio and audio→video cross-entropies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def infonce(v: torch.Tensor, a: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over L2-normalised embeddings `v`, `a` of shape B×D; returns a scalar."""
    if v.shape != a.shape or v.dim() != 2:
        raise ValueError(f"infonce expects two B×D tensors of one shape, got {tuple(v.shape)} and {tuple(a.shape)}")
    logits = v @ a.t() / temperature
    targets = torch.arange(v.shape[0], device=v.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


def retrieval_accuracy(v: torch.Tensor, a: torch.Tensor) -> float:
    """Fraction of rows whose nearest other-modality row (both directions) is its own pair: a health metric."""
    with torch.no_grad():
        sim = v @ a.t()
        targets = torch.arange(v.shape[0], device=v.device)
        hits = (sim.argmax(1) == targets).float().mean() + (sim.argmax(0) == targets).float().mean()
    return float(hits / 2)
