"""Temporal self-supervision + contrastive learning (Jenni, Black, Collomosse 2023; METHODS.md §4).

- Classification heads on clip features: playback speed (classes 1×/2×/4×/8×), direction (forward/reversed),
  and ordering (an MLP on two concatenated features: does the second come after the first?), used both
  intra-modally (two clips of one modality) and inter-modally (a video and an audio clip of one video).
  Order labels of −1 mark pairs the sampler could not place; they are ignored.
- Contrastive terms with extra sample-dependent positives (nearest neighbours of the positive in a queue of
  past features) and extra negatives (temporally transformed versions of the same clip: wrong speed, reversed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avcli.losses.precision import float32_loss


class TemporalHeads(nn.Module):
    """Speed (n_speeds-way), direction (1 logit: reversed) and order (MLP on [x, y] → 1 logit: y after x)."""

    def __init__(self, dim: int, n_speeds: int = 4, hidden: int = 512):
        super().__init__()
        self.speed = nn.Linear(dim, n_speeds)
        self.direction = nn.Linear(dim, 1)
        self.order = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def order_logit(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self.order(torch.cat([first, second], dim=1)).squeeze(1)


@float32_loss
def speed_loss(logits: torch.Tensor, speed_class: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the speed classes (B×S logits, B class indices)."""
    return F.cross_entropy(logits, speed_class)


@float32_loss
def direction_loss(logit: torch.Tensor, reversed_: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: logit > 0 means "reversed"."""
    return F.binary_cross_entropy_with_logits(logit.reshape(-1), reversed_.float().reshape(-1))


@float32_loss
def order_loss(logit: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the pairs whose order label is 0 or 1; pairs labelled −1 are ignored (zero loss,
    no gradient) — the sampler could not fit two disjoint clips in that item. A masked mean: no row count is
    read on the host."""
    logit, order = logit.reshape(-1), order.reshape(-1)
    valid = (order >= 0).to(logit.dtype)
    per_pair = F.binary_cross_entropy_with_logits(logit, order.clamp(min=0).to(logit.dtype), reduction="none")
    return (per_pair * valid).sum() / valid.sum().clamp(min=1)


def binary_accuracy(logit: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Health metric for direction/order heads (labels −1 ignored; NaN when every label is): a 0-d tensor on the
    logits' device."""
    logit, label = logit.reshape(-1).detach(), label.reshape(-1)
    valid = (label >= 0).float()
    right = ((logit > 0).long() == label.long()).float() * valid
    return torch.where(valid.sum() > 0, right.sum() / valid.sum().clamp(min=1), torch.nan)


@float32_loss
def contrastive_with_extras(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    temperature: float,
    extra_negatives: torch.Tensor | None = None,
    extra_positives: torch.Tensor | None = None,
    extra_negative_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE of `anchor` (B×D) against `positive` (B×D; row i is i's positive, other rows negatives), with
    optional per-sample extra negatives (B×M×D: e.g. the same clip at a wrong speed or reversed) and extra
    positives (B×P×D: e.g. queue neighbours of the positive). All inputs L2-normalised.

    With positives P_i = {positive_i} ∪ extra_positives_i and the candidate set C_i = all batch positives ∪
    extra negatives_i ∪ extra positives_i, the loss is the multi-positive form
        L_i = −log( Σ_{p∈P_i} exp(a_i·p/τ) / Σ_{c∈C_i} exp(a_i·c/τ) ),
    averaged over i. Without extras it is one direction of `infonce`. `extra_negative_mask` (B×M bool) keeps
    only the extra negatives marked True (a sample may have fewer real ones than M).
    """
    logits = [anchor @ positive.t() / temperature]  # B×B; diagonal = positives
    batch = anchor.shape[0]
    positive_mask = [torch.eye(batch, dtype=torch.bool, device=anchor.device)]
    if extra_negatives is not None:
        extra = torch.einsum("bd,bmd->bm", anchor, extra_negatives) / temperature
        if extra_negative_mask is not None:
            extra = extra.masked_fill(~extra_negative_mask.bool(), float("-inf"))
        logits.append(extra)
        positive_mask.append(torch.zeros(batch, extra_negatives.shape[1], dtype=torch.bool, device=anchor.device))
    if extra_positives is not None:
        logits.append(torch.einsum("bd,bpd->bp", anchor, extra_positives) / temperature)
        positive_mask.append(torch.ones(batch, extra_positives.shape[1], dtype=torch.bool, device=anchor.device))
    all_logits = torch.cat(logits, dim=1)
    mask = torch.cat(positive_mask, dim=1)
    log_denominator = torch.logsumexp(all_logits, dim=1)
    log_numerator = torch.logsumexp(all_logits.masked_fill(~mask, float("-inf")), dim=1)
    return (log_denominator - log_numerator).mean()


class FeatureQueue(nn.Module):
    """A FIFO queue of past (detached, L2-normalised) features, as a buffer so it is checkpointed; the source of
    the extra positives: the nearest neighbours of a positive among recent features.

    How full it is is also kept on the host (it grows by row counts the host knows), so asking for neighbours never
    waits for the device. While a journal is open (`begin_journal`) every push records what it overwrote, so a
    skipped step can be undone (`rollback`) without a copy of the queue."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("features", torch.zeros(size, dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self._filled: int | None = 0
        self.journal: list | None = None

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._filled = None  # read once from the loaded buffer

    def stored(self) -> int:
        if self._filled is None:
            self._filled = int(self.filled)
        return self._filled

    def begin_journal(self) -> None:
        self.journal = []

    @torch.no_grad()
    def rollback(self) -> None:
        for index, old, pointer, filled, host_filled in reversed(self.journal or []):
            self.features.index_copy_(0, index, old)
            self.pointer.copy_(pointer)
            self.filled.copy_(filled)
            self._filled = host_filled
        self.journal = []

    @torch.no_grad()
    @float32_loss
    def push(self, features: torch.Tensor) -> None:
        size = self.features.shape[0]
        rows = features.detach()[-size:]
        index = (self.pointer + torch.arange(rows.shape[0], device=rows.device)) % size
        if self.journal is not None:
            self.journal.append((index, self.features.index_select(0, index), self.pointer.clone(),
                                 self.filled.clone(), self._filled))
        self.features.index_copy_(0, index, rows.to(self.features.dtype))
        self.pointer.copy_((self.pointer + rows.shape[0]) % size)
        self.filled.copy_(torch.clamp(self.filled + rows.shape[0], max=size))
        self._filled = min(self.stored() + rows.shape[0], size)

    @torch.no_grad()
    @float32_loss
    def nearest(self, query: torch.Tensor, k: int) -> torch.Tensor | None:
        """B×k×D: the k stored features most similar (cosine) to each query row; None while fewer than k stored."""
        filled = self.stored()
        if k <= 0 or filled < k:
            return None
        stored = self.features[:filled]
        top = (query.detach() @ stored.t()).topk(k, dim=1).indices
        return stored[top]


@float32_loss
def contrastive_rows(
    anchor: torch.Tensor,
    positives_all: torch.Tensor,
    offset: int,
    temperature: float,
    extra_negatives: torch.Tensor | None = None,
    extra_positives: torch.Tensor | None = None,
    extra_negative_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """`contrastive_with_extras` for local rows when the batch is spread over several processes: the B local
    anchors score against the positives of the whole batch (`positives_all`, N×D, row offset+i is anchor i's
    positive) plus their own extras. Returns the B per-row losses (the caller divides their sum by the global
    number of rows)."""
    batch, total = anchor.shape[0], positives_all.shape[0]
    logits = [anchor @ positives_all.t() / temperature]
    own = torch.zeros(batch, total, dtype=torch.bool, device=anchor.device)
    own[torch.arange(batch, device=anchor.device), torch.arange(batch, device=anchor.device) + offset] = True
    positive_mask = [own]
    if extra_negatives is not None:
        extra = torch.einsum("bd,bmd->bm", anchor, extra_negatives) / temperature
        if extra_negative_mask is not None:
            extra = extra.masked_fill(~extra_negative_mask.bool(), float("-inf"))
        logits.append(extra)
        positive_mask.append(torch.zeros(batch, extra_negatives.shape[1], dtype=torch.bool, device=anchor.device))
    if extra_positives is not None:
        logits.append(torch.einsum("bd,bpd->bp", anchor, extra_positives) / temperature)
        positive_mask.append(torch.ones(batch, extra_positives.shape[1], dtype=torch.bool, device=anchor.device))
    all_logits = torch.cat(logits, dim=1)
    mask = torch.cat(positive_mask, dim=1)
    return torch.logsumexp(all_logits, dim=1) - torch.logsumexp(all_logits.masked_fill(~mask, float("-inf")), dim=1)
