"""AVID memory-bank variant of cross-modal instance discrimination (METHODS.md §1).

One bank per modality holds an N×D embedding for every catalog item (N = number of items in the training
catalog, given at construction). For a batch of items `index`, the video embedding v_i is scored against the
audio bank: the positive is bank_a[i], the K negatives are rows of bank_a drawn uniformly from the other N − 1
items; symmetrically for a_i against bank_v. Scores are logits s = x·m/τ (cosine over τ).

Two losses over those scores:

- `nce_constant_z_loss`: noise-contrastive estimation with a constant partition estimate Z (the mean of
  exp(s⁻) over the first batch, then frozen; `PartitionEstimate`):
      L = −log(e^{s⁺} / (e^{s⁺} + K·Z)) − Σ_k log(K·Z / (e^{s⁻_k} + K·Z)).
- `softmax_bank_loss`: plain InfoNCE, cross-entropy over [s⁺, s⁻_1 … s⁻_K] with target 0.

Order of operations in one training step (as in the reference, facebookresearch/AVID-CMA): score the batch
against the banks as they are, compute the loss from those scores, then update the banks with the batch's
(detached) embeddings — `MemoryBank.update` after `cross_modal_bank_loss`. The loss functions never modify a
bank; a bank never carries gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from avcli.losses.precision import float32_loss


def _check_range(index: torch.Tensor, num_items: int) -> None:
    """Indices outside the bank are an error. Checked for CPU indices only: on a GPU the check would wait for the
    device at every step, and an index out of range there fails the indexing kernel anyway."""
    if index.device.type == "cpu" and index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_items):
        raise ValueError(f"index out of range for {num_items} items")


def sample_negatives(
    index: torch.Tensor, num_items: int, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """B×K item indices, each drawn uniformly from {0 … num_items−1} minus that row's own `index[b]`.

    Exact, not probabilistic: draw r uniformly from {0 … N−2} and shift it past the excluded item
    (r ↦ r + 1 when r ≥ index[b]), a bijection onto the N − 1 allowed items, so every other item has
    probability exactly 1/(N−1) and the row's own item never appears. Draws are with replacement (a row may
    hold the same negative twice), as in the reference. Random numbers come from `generator` (on its own
    device; the result is moved to `index`'s device); None uses torch's global generator.
    """
    if index.dim() != 1:
        raise ValueError(f"index must be a 1-D LongTensor, got shape {tuple(index.shape)}")
    if num_items < 2:
        raise ValueError(f"need at least 2 items to draw negatives excluding self, got {num_items}")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    _check_range(index, num_items)
    device = generator.device if generator is not None else index.device
    draw = torch.randint(0, num_items - 1, (index.shape[0], k), generator=generator, device=device)
    draw = draw.to(index.device)
    return draw + (draw >= index.long().unsqueeze(1)).long()


class MemoryBank(nn.Module):
    """One N×D bank per modality, as buffers `bank_<modality>` (checkpointed with state_dict, moved by .to()).

    Rows start as randn, L2-normalised, drawn from `generator` (or a fresh one seeded with `seed`) in the
    order of `modalities` — so a seed reproduces the banks exactly.
    """

    def __init__(
        self,
        num_items: int,
        dim: int = 128,
        modalities: Sequence[str] = ("video", "audio"),
        seed: int = 0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if num_items < 2:
            raise ValueError(f"a memory bank needs at least 2 items (negatives exclude self), got {num_items}")
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if len(set(modalities)) != len(modalities) or not modalities:
            raise ValueError(f"modalities must be distinct and non-empty, got {list(modalities)}")
        if generator is None:
            generator = torch.Generator().manual_seed(seed)
        self.num_items = int(num_items)
        self.dim = int(dim)
        self.modalities = tuple(modalities)
        for name in self.modalities:
            rows = torch.randn(num_items, dim, generator=generator, device=generator.device)
            self.register_buffer(f"bank_{name}", F.normalize(rows, p=2, dim=1).cpu())

    # ------------------------------------------------------------------ undo journal (skipped steps)

    journal: list | None = None

    def begin_journal(self) -> None:
        """Record the rows every following `update` overwrites, until `rollback` or the next `begin_journal`."""
        self.journal = []

    def _record(self, name: str, idx: torch.Tensor, old: torch.Tensor) -> None:
        if self.journal is not None:
            self.journal.append((name, idx, old))

    @torch.no_grad()
    def rollback(self) -> None:
        """Put back every row written since `begin_journal`, newest write first."""
        for name, idx, old in reversed(self.journal or []):
            self.bank(name).index_copy_(0, idx, old)
        self.journal = []

    def bank(self, modality: str) -> torch.Tensor:
        """The N×D buffer of `modality` (the live tensor: read it, don't write it)."""
        if modality not in self.modalities:
            raise KeyError(f"no bank for modality {modality!r}; have {list(self.modalities)}")
        return getattr(self, f"bank_{modality}")

    def sample_negatives(
        self, index: torch.Tensor, k: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """B×K negatives for the items `index`, uniform over the other N − 1 items (see `sample_negatives`)."""
        return sample_negatives(index, self.num_items, k, generator)

    @torch.no_grad()
    @float32_loss
    def update(
        self, index: torch.Tensor, features: Mapping[str, torch.Tensor], momentum: float = 0.5
    ) -> None:
        """bank[i] ← normalize(m·bank[i] + (1−m)·f_i) for every modality in `features` (B×D each, detached).

        Duplicate indices in one call: their features are averaged first, and the row is updated once with
        that mean (deterministic, unlike a scatter where some write wins). Call after the loss is computed.
        The mean over duplicates comes from a B×B equality matrix rather than `torch.unique`, whose output size
        would have to be read on the host at every step. Rows written are first recorded in the undo journal
        when one is open (`begin_journal`), so that a skipped step can put them back without a copy of the bank.
        """
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        if index.dim() != 1:
            raise ValueError(f"index must be a 1-D LongTensor, got shape {tuple(index.shape)}")
        _check_range(index, self.num_items)
        for name, feats in features.items():
            bank = self.bank(name)
            if feats.shape != (index.shape[0], self.dim):
                raise ValueError(
                    f"{name} features must be {index.shape[0]}×{self.dim}, got {tuple(feats.shape)}"
                )
            idx = index.to(bank.device).long()
            feats = feats.detach().to(device=bank.device, dtype=bank.dtype)
            same = (idx[:, None] == idx[None, :]).to(bank.dtype)  # B×B: row i's duplicates (itself included)
            mean = (same @ feats) / same.sum(1, keepdim=True)
            old = bank.index_select(0, idx)
            self._record(name, idx, old)
            mixed = F.normalize(momentum * old + (1.0 - momentum) * mean, p=2, dim=1)
            bank.index_copy_(0, idx, mixed)  # duplicates write the same row


class PartitionEstimate(nn.Module):
    """The constant Z of NCE: the mean of exp(s⁻) over the first batch it sees, then frozen.

    Buffers `z` (scalar) and `initialised` (bool) are checkpointed, so a resumed run keeps its Z. Under
    torch.distributed the first-batch mean is averaged over ranks (as in the reference) so every rank holds
    the same Z. Calling it returns Z (no gradient).
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("z", torch.ones(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self._ready: bool | None = None  # `initialised` as the host knows it: read from the device once, not per step

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._ready = None

    def is_ready(self) -> bool:
        if not self._ready:
            self._ready = bool(self.initialised)
        return self._ready

    @torch.no_grad()
    def forward(self, neg_logits: torch.Tensor) -> torch.Tensor:
        if not self.is_ready():
            mean = neg_logits.detach().float().exp().mean().to(self.z.device)
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(mean)
                mean = mean / dist.get_world_size()
            self.z.copy_(mean)
            self.initialised.fill_(True)
            self._ready = True
        return self.z.clone()


@float32_loss
def nce_constant_z_loss(
    pos_logit: torch.Tensor,
    neg_logits: torch.Tensor,
    z: float | torch.Tensor | PartitionEstimate,
    k: int | None = None,
) -> torch.Tensor:
    """NCE with a constant partition estimate, averaged over the batch.

    `pos_logit` (B or B×1) and `neg_logits` (B×K) are logits s, already divided by τ; e^{s} is the
    unnormalised model density. With K·Z the noise term:
        L_b = −log(e^{s⁺}/(e^{s⁺}+K·Z)) − Σ_k log(K·Z/(e^{s⁻_k}+K·Z)),
    computed stably as softplus(log KZ − s⁺) + Σ_k softplus(s⁻_k − log KZ). `z` is a positive number or a
    `PartitionEstimate` (fed `neg_logits`, which initialises it on its first batch); it carries no gradient.
    `k` (the noise ratio in K·Z) defaults to the number of negatives given.
    """
    pos = pos_logit.reshape(-1)
    if neg_logits.dim() != 2 or neg_logits.shape[0] != pos.shape[0]:
        raise ValueError(
            f"expected pos B (or B×1) and neg B×K, got {tuple(pos_logit.shape)} and {tuple(neg_logits.shape)}"
        )
    if isinstance(z, PartitionEstimate):
        z = z(neg_logits)
    elif not isinstance(z, torch.Tensor) and not z > 0:  # a tensor Z is not read back from the device to check
        raise ValueError(f"the partition estimate Z must be positive, got {z}")
    z = torch.as_tensor(z, dtype=neg_logits.dtype, device=neg_logits.device).detach()
    k = neg_logits.shape[1] if k is None else int(k)
    log_kz = torch.log(k * z)
    positive_term = F.softplus(log_kz - pos)
    negative_term = F.softplus(neg_logits - log_kz).sum(dim=1)
    return (positive_term + negative_term).mean()


@float32_loss
def softmax_bank_loss(pos_logit: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
    """Plain InfoNCE over the positive and the K bank negatives: cross-entropy of [s⁺, s⁻_1 … s⁻_K] with
    target 0, averaged over the batch (logits already divided by τ)."""
    pos = pos_logit.reshape(-1, 1)
    if neg_logits.dim() != 2 or neg_logits.shape[0] != pos.shape[0]:
        raise ValueError(
            f"expected pos B (or B×1) and neg B×K, got {tuple(pos_logit.shape)} and {tuple(neg_logits.shape)}"
        )
    logits = torch.cat([pos, neg_logits], dim=1)
    return F.cross_entropy(logits, torch.zeros(pos.shape[0], dtype=torch.long, device=logits.device))


@float32_loss
def bank_logits(
    query: torch.Tensor, bank: torch.Tensor, index: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B positive logits, B×K negative logits) of `query` (B×D) against `bank` rows `index` and `negatives`
    (B×K), divided by τ. The bank is detached: gradient reaches the query only."""
    bank = bank.detach()
    pos = (query * bank[index]).sum(dim=1) / temperature
    neg = torch.einsum("bd,bkd->bk", query, bank[negatives]) / temperature
    return pos, neg


@float32_loss
def cross_modal_bank_loss(
    v: torch.Tensor,
    a: torch.Tensor,
    index: torch.Tensor,
    bank_v: torch.Tensor,
    bank_a: torch.Tensor,
    k: int,
    temperature: float,
    generator: torch.Generator | None = None,
    form: str = "nce",
    z_v: float | torch.Tensor | PartitionEstimate | None = None,
    z_a: float | torch.Tensor | PartitionEstimate | None = None,
    negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """½(v→a + a→v) against the memory banks; returns a scalar.

    v→a: video embeddings `v` (B×D, L2-normalised) scored against the audio bank, positive bank_a[index],
    negatives bank_a[negatives]; a→v symmetrically against bank_v. One draw of K negatives per row (uniform,
    excluding self) serves both directions, as in the reference. `form` is "nce" (constant-Z NCE; `z_v` is the
    partition estimate of the v→a term, `z_a` of the a→v term; `z_a` defaults to `z_v`, one shared estimate
    initialised by the v→a scores as in the reference) or "softmax" (InfoNCE over positive + K negatives).

    `negatives` (B×K item indices) replaces the draw: several processes draw the negatives of the whole batch
    from one shared generator and each passes its own rows, so they score what one process would.

    The banks are read, never written: update them (`MemoryBank.update`) after this call, with the same
    batch's detached embeddings.
    """
    if v.dim() != 2 or v.shape != a.shape:
        raise ValueError(f"expected two B×D tensors of one shape, got {tuple(v.shape)} and {tuple(a.shape)}")
    if bank_v.shape != bank_a.shape or bank_v.shape[1] != v.shape[1]:
        raise ValueError(
            f"banks must both be N×{v.shape[1]}, got {tuple(bank_v.shape)} and {tuple(bank_a.shape)}"
        )
    if index.shape != (v.shape[0],):
        raise ValueError(f"index must have shape ({v.shape[0]},), got {tuple(index.shape)}")
    if form not in ("nce", "softmax"):
        raise ValueError(f"form must be 'nce' or 'softmax', got {form!r}")
    if form == "nce" and z_v is None:
        raise ValueError("form='nce' needs a partition estimate z_v (a PartitionEstimate or a number)")
    if z_a is None:
        z_a = z_v
    index = index.to(bank_a.device).long()
    if negatives is None:
        negatives = sample_negatives(index, bank_a.shape[0], k, generator)
    elif negatives.shape != (v.shape[0], k):
        raise ValueError(f"negatives must have shape ({v.shape[0]}, {k}), got {tuple(negatives.shape)}")
    else:
        negatives = negatives.to(index.device).long()
    pos_va, neg_va = bank_logits(v, bank_a, index, negatives, temperature)
    pos_av, neg_av = bank_logits(a, bank_v, index, negatives, temperature)
    if form == "softmax":
        return 0.5 * (softmax_bank_loss(pos_va, neg_va) + softmax_bank_loss(pos_av, neg_av))
    return 0.5 * (nce_constant_z_loss(pos_va, neg_va, z_v, k) + nce_constant_z_loss(pos_av, neg_av, z_a, k))
