"""AVTS: audio-visual temporal synchronisation losses (Korbar, Tran, Torresani 2018; METHODS.md §3).

A batch holds B (video, audio) pairs; `positive[i]` (the paper's label y_i) is True when the pair is in sync
(aligned windows of one video) and False for a negative (audio from another video, or a shifted window of the
same video). Two heads exist in the paper:

- the contrastive margin loss on L2-normalised embeddings (the main choice), with
  `L = mean_i [ y_i·‖v_i−a_i‖² + (1−y_i)·max(0, η − ‖v_i−a_i‖)² ]`, margin η = 0.99;
- a fused classifier (concatenate v and a, MLP, one logit) trained with binary cross-entropy (the alternative).

`sync_accuracy` is the training-time health metric for the margin model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avcli.losses.precision import float32_loss


def _check_pairs(v: torch.Tensor, a: torch.Tensor, positive: torch.Tensor, name: str) -> None:
    if v.shape != a.shape or v.dim() != 2:
        raise ValueError(f"{name} expects two B×D tensors of one shape, got {tuple(v.shape)} and {tuple(a.shape)}")
    if positive.shape != (v.shape[0],):
        raise ValueError(f"{name} expects `positive` of shape ({v.shape[0]},), got {tuple(positive.shape)}")


def _pair_distance(v: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(‖v_i−a_i‖², ‖v_i−a_i‖) per row; the root has a finite (zero) gradient where the two rows coincide."""
    d2 = (v - a).pow(2).sum(-1)
    nonzero = d2 > 0
    d = torch.where(nonzero, torch.where(nonzero, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))
    return d2, d


@float32_loss
def avts_margin_loss(v: torch.Tensor, a: torch.Tensor, positive: torch.Tensor, margin: float = 0.99) -> torch.Tensor:
    """AVTS contrastive margin loss; returns a scalar.

    `v`, `a`: B×D embeddings, L2-normalised by the caller (the paper's f_v, f_a). `positive`: bool tensor of
    shape B, the label y (True = in sync). `margin`: η. Per pair, with d = ‖v−a‖₂:
    y·d² + (1−y)·max(0, η − d)², averaged over the B pairs. Negatives already farther than η contribute
    neither value nor gradient.
    """
    _check_pairs(v, a, positive, "avts_margin_loss")
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    y = positive.to(dtype=v.dtype)
    d2, d = _pair_distance(v, a)
    per_pair = y * d2 + (1.0 - y) * torch.clamp(margin - d, min=0.0).pow(2)
    return per_pair.mean()


@float32_loss
def masked_pair_loss(v: torch.Tensor, a: torch.Tensor, pairs: torch.Tensor, margin: float = 0.99,
                     classifier: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ loss, count) over the negative pairs (v_i, a_j) marked in the B×N bool `pairs`, as 0-d tensors: the
    margin term max(0, η − ‖v_i − a_j‖)², or with a fused `classifier` the binary cross-entropy of its logit
    against "not in sync". Every pairing is scored and the mask weights them, so the set of pairs is never read
    on the host; mean = Σ / count."""
    if v.dim() != 2 or a.dim() != 2 or pairs.shape != (v.shape[0], a.shape[0]):
        raise ValueError(f"expected B×D, N×D and a B×N mask, got {tuple(v.shape)}, {tuple(a.shape)}, "
                         f"{tuple(pairs.shape)}")
    mask = pairs.to(v.dtype)
    if classifier is None:
        _, d = _pair_distance(v[:, None, :], a[None, :, :])
        per_pair = torch.clamp(margin - d, min=0.0).pow(2)
    else:
        b, n = pairs.shape
        logits = classifier(v[:, None].expand(b, n, -1).reshape(b * n, -1),
                            a[None].expand(b, n, -1).reshape(b * n, -1)).view(b, n)
        per_pair = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (per_pair * mask).sum(), mask.sum()


@float32_loss
def sync_accuracy(v: torch.Tensor, a: torch.Tensor, positive: torch.Tensor, margin: float = 0.99) -> float:
    """Fraction of pairs classified correctly by the margin model (a health metric, no gradient).

    Rule: a pair is predicted in sync exactly when its distance ‖v−a‖₂ is strictly below η/2 (half the margin,
    midway between the positives' target distance 0 and the distance η beyond which negatives stop being
    penalised); a pair at distance ≥ η/2 is predicted out of sync. The prediction is correct when it equals
    `positive`.
    """
    _check_pairs(v, a, positive, "sync_accuracy")
    if v.shape[0] == 0:
        raise ValueError("sync_accuracy needs at least one pair")
    with torch.no_grad():
        _, d = _pair_distance(v.detach(), a.detach())
        predicted = d < margin / 2
        correct = (predicted == positive.to(torch.bool)).float().mean()
    return float(correct)


def best_threshold(score: torch.Tensor, positive: torch.Tensor) -> float:
    """The threshold t that classifies the most pairs right under "in sync when score > t" (score: the higher,
    the more in sync, e.g. −‖v−a‖ or a fused logit). Candidates are the midpoints between consecutive distinct
    sorted scores plus one below and one above all of them; among equally good ones the middle one is taken."""
    values = torch.unique(score.detach().double())  # sorted
    candidates = torch.cat([values[:1] - 1.0, (values[1:] + values[:-1]) / 2, values[-1:] + 1.0])
    y = positive.to(torch.bool)
    correct = ((score.detach().double()[None, :] > candidates[:, None]) == y[None, :]).sum(1)
    best = torch.nonzero(correct == correct.max()).squeeze(1)
    return float(candidates[best[len(best) // 2]])


def cross_validated_sync_accuracy(score: torch.Tensor, positive: torch.Tensor, folds: int = 2) -> float:
    """Sync accuracy with a calibrated threshold, never scored on the pairs it was chosen on: positives and
    negatives are each dealt round-robin, in order, to `folds` folds (so every fold holds both); each fold is
    classified with the threshold `best_threshold` picks on the other folds; returns the fraction of all pairs
    classified right. A margin-loss embedding says how far apart a pair is, not where "in sync" ends: η/2 is a
    convention, this is the threshold the data support."""
    if score.shape != positive.shape or score.dim() != 1:
        raise ValueError(f"expected two tensors of shape (B,), got {tuple(score.shape)} and {tuple(positive.shape)}")
    if score.numel() < 2 * folds:
        raise ValueError(f"cross_validated_sync_accuracy needs at least {2 * folds} pairs, got {score.numel()}")
    y = positive.to(torch.bool)
    fold = torch.empty(score.numel(), dtype=torch.long, device=score.device)
    for label in (True, False):
        where = torch.nonzero(y == label).squeeze(1)
        fold[where] = torch.arange(where.numel(), device=score.device) % folds
    right = 0
    for k in range(folds):
        held = fold == k
        t = best_threshold(score[~held], y[~held])
        right += int(((score[held].double() > t) == y[held]).sum())
    return right / score.numel()


class FusedSyncClassifier(nn.Module):
    """AVTS fused alternative: an MLP (Linear → ReLU → Linear) on the pair's fused embeddings → one sync logit.

    `interactions=False`: the input is concat(v, a) (2·D). `interactions=True`: concat(v, a, v⊙a, |v − a|)
    (4·D), which hands the MLP the per-dimension agreement it would otherwise have to discover from the
    concatenation (learns much sooner from scratch)."""

    def __init__(self, dim: int, hidden: int = 512, interactions: bool = False) -> None:
        super().__init__()
        if dim <= 0 or hidden <= 0:
            raise ValueError(f"dim and hidden must be positive, got {dim} and {hidden}")
        self.interactions = bool(interactions)
        width = (4 if interactions else 2) * dim
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=False), nn.Linear(hidden, 1))

    def forward(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Logits of shape B (positive = in sync) for B×D embeddings `v` and `a`."""
        if v.shape != a.shape or v.dim() != 2:
            raise ValueError(f"expects two B×D tensors of one shape, got {tuple(v.shape)} and {tuple(a.shape)}")
        parts = [v, a, v * a, (v - a).abs()] if self.interactions else [v, a]
        return self.net(torch.cat(parts, dim=1)).squeeze(1)


@float32_loss
def fused_sync_loss(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits (mean over pairs) of the fused classifier against the sync label y.

    `logits`: shape B (or B×1); `positive`: bool tensor of shape B.
    """
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits.squeeze(1)
    if logits.dim() != 1 or positive.shape != logits.shape:
        raise ValueError(f"fused_sync_loss expects logits and labels of shape (B,), got "
                         f"{tuple(logits.shape)} and {tuple(positive.shape)}")
    return F.binary_cross_entropy_with_logits(logits, positive.to(dtype=logits.dtype))
