"""Robust-xID: cross-modal instance discrimination robust to faulty positives and negatives
(Morgado, Misra, Vasconcelos, CVPR 2021; METHODS.md §2).

Two corrections of the xID objective (METHODS.md §1), both in the in-batch form:

- **Faulty positives → weights.** Each pair i gets a weight w_i from its cross-modal agreement s_i (cosine of
  v_i and a_i): pairs that agree less than the dataset typically does are down-weighted,
  `w_i = w_min + (1 − w_min)·Φ((s_i − (μ + δσ)) / (σ√κ))`, and the loss becomes Σ_i w_i·L_i / Σ_i w_i.
  μ, σ come from `AgreementStats` (an EMA of batch statistics) or from the whole memory bank.
- **Faulty negatives → soft targets.** The one-hot target of the v→a cross-entropy becomes
  `y_ij = (1−λ)·1[i=j] + λ·S_ij`, where S (rows sum to 1) says which other items of the batch are probably
  also positives for i. Estimators: bootstrap, swapped, cycle-consistent (`soft_targets`).

Everything here is a pure function of tensors (plus the small `AgreementStats` accumulator); weights and
targets never carry gradient.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from avcli.losses.precision import float32_loss

SOFT_TARGET_KINDS = ("bootstrap", "swapped", "cycle")


# --------------------------------------------------------------------------------------------------------------
# Faulty positives: weights
# --------------------------------------------------------------------------------------------------------------


@float32_loss
def pair_agreement(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """s_i = v_i·a_i for B×D L2-normalised rows (cosine agreement of each pair), detached, shape B."""
    if v.shape != a.shape or v.dim() != 2:
        raise ValueError(f"pair_agreement expects two B×D tensors of one shape, got {tuple(v.shape)} and "
                         f"{tuple(a.shape)}")
    with torch.no_grad():
        return (v.detach() * a.detach()).sum(1)


@float32_loss
def faulty_positive_weights(s: torch.Tensor, mu: float | torch.Tensor, sigma: float | torch.Tensor,
                            delta: float = 0.0, kappa: float = 0.5, w_min: float = 0.25) -> torch.Tensor:
    """Per-pair weights w_i = w_min + (1 − w_min)·Φ((s_i − (μ + δσ)) / (σ√κ)), without gradient.

    `s`: agreement scores s_i (any shape). `mu`, `sigma`: μ and σ of the agreement distribution (σ > 0; a σ
    below 1e-12 is treated as 1e-12). `delta`: δ, the shift of the threshold in units of σ. `kappa`: κ, the
    sharpness (smaller = closer to a step). `w_min`: the floor weight of the least trusted pairs. Φ is the
    standard normal CDF. The result is computed on detached inputs: it never requires grad.
    """
    if kappa <= 0:
        raise ValueError(f"kappa must be positive, got {kappa}")
    if not 0.0 <= w_min <= 1.0:
        raise ValueError(f"w_min must lie in [0, 1], got {w_min}")
    with torch.no_grad():
        s = s.detach()
        mu_t = torch.as_tensor(mu, dtype=s.dtype, device=s.device).detach()
        sigma_t = torch.as_tensor(sigma, dtype=s.dtype, device=s.device).detach().clamp(min=1e-12)
        z = (s - (mu_t + delta * sigma_t)) / (sigma_t * math.sqrt(kappa))
        phi = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
        return w_min + (1.0 - w_min) * phi


@float32_loss
def weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_i w_i·L_i / Σ_i w_i with the weights detached (gradient flows to the losses only).

    If every weight is zero the result is 0 (not NaN).
    """
    if losses.shape != weights.shape:
        raise ValueError(f"weighted_mean expects losses and weights of one shape, got {tuple(losses.shape)} and "
                         f"{tuple(weights.shape)}")
    w = weights.detach().to(dtype=losses.dtype)
    return (w * losses).sum() / w.sum().clamp(min=torch.finfo(losses.dtype).tiny)


class AgreementStats:
    """EMA of the mean μ and standard deviation σ of batch agreement scores (the EMA option of METHODS.md §2).

    `update(s)` takes a batch of scores s_i; the batch mean and the population standard deviation (divisor n,
    so a batch of one gives σ_batch = 0) are computed, then
    μ ← m·μ + (1−m)·mean(s), σ ← m·σ + (1−m)·std(s) with momentum m (0.99 by default). The first update sets
    μ and σ to the batch values directly. `.mu` and `.sigma` are Python floats and raise before any update.
    """

    def __init__(self, momentum: float = 0.99) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self._mu: float | None = None
        self._sigma: float | None = None
        self.count = 0

    @property
    def initialized(self) -> bool:
        return self._mu is not None

    @property
    def mu(self) -> float:
        if self._mu is None:
            raise RuntimeError("AgreementStats.mu is undefined before the first update()")
        return self._mu

    @property
    def sigma(self) -> float:
        if self._sigma is None:
            raise RuntimeError("AgreementStats.sigma is undefined before the first update()")
        return self._sigma

    def update(self, s: torch.Tensor) -> tuple[float, float]:
        """Fold one batch of agreement scores in; returns the new (μ, σ)."""
        with torch.no_grad():
            flat = s.detach().reshape(-1).to(torch.float64)
            if flat.numel() == 0:
                raise ValueError("AgreementStats.update needs at least one score")
            batch_mu = float(flat.mean())
            batch_sigma = float(flat.std(unbiased=False))
        if self._mu is None or self._sigma is None:
            self._mu, self._sigma = batch_mu, batch_sigma
        else:
            m = self.momentum
            self._mu = m * self._mu + (1.0 - m) * batch_mu
            self._sigma = m * self._sigma + (1.0 - m) * batch_sigma
        self.count += 1
        return self._mu, self._sigma

    def state_dict(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "mu": self._mu, "sigma": self._sigma, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.momentum = float(state["momentum"])
        self._mu = None if state["mu"] is None else float(state["mu"])
        self._sigma = None if state["sigma"] is None else float(state["sigma"])
        self.count = int(state.get("count", 0))


# --------------------------------------------------------------------------------------------------------------
# Faulty negatives: soft targets
# --------------------------------------------------------------------------------------------------------------


@float32_loss
def soft_targets(kind: str, v: torch.Tensor, a: torch.Tensor, v_bank: torch.Tensor | None = None,
                 a_bank: torch.Tensor | None = None, lam: float = 0.5, tau_s: float = 0.02,
                 tau_t: float = 0.07) -> torch.Tensor:
    """B×B soft targets y_ij = (1−λ)·1[i=j] + λ·S_ij for the in-batch v→a cross-entropy (row i = query v_i,
    column j = candidate a_j); every row sums to 1 and the result carries no gradient.

    `v`, `a`: B×D L2-normalised batch features (queries v_i, a_i). `v_bank`, `a_bank`: the "bank" features
    v̄_j, ā_j of the same B items, row-aligned with the batch (e.g. the memory-bank entries of the batch's
    items); each defaults to the batch's own detached features. `lam`: λ. `tau_s`: τ_s, the temperature of the
    similarity term. `tau_t`: τ_t, the temperature of the agreement terms of "cycle". S_ij = softmax_j(·) of:

    - "bootstrap" (same modality): v_i·v̄_j / τ_s;
    - "swapped" (other modality's neighbourhood): a_i·ā_j / τ_s;
    - "cycle" (cycle-consistent): s_ii/τ_t + a_i·v̄_j/τ_s + s_jj/τ_t with s_kk = v̄_k·ā_k, the agreement of pair
      k computed on the bank features (s_ii is constant along j and cancels in the softmax; it is kept to
      mirror the paper's formula).

    For the a→v direction call the function again with the roles of the modalities swapped
    (`soft_targets(kind, a, v, a_bank, v_bank, ...)`), or use `soft_target_pair`.
    """
    if kind not in SOFT_TARGET_KINDS:
        raise ValueError(f"unknown soft-target kind {kind!r}; expected one of {', '.join(SOFT_TARGET_KINDS)}")
    if v.shape != a.shape or v.dim() != 2:
        raise ValueError(f"soft_targets expects two B×D tensors of one shape, got {tuple(v.shape)} and "
                         f"{tuple(a.shape)}")
    for name, bank in (("v_bank", v_bank), ("a_bank", a_bank)):
        if bank is not None and bank.shape != v.shape:
            raise ValueError(f"{name} must be row-aligned with the batch ({tuple(v.shape)}), got {tuple(bank.shape)}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    if tau_s <= 0 or tau_t <= 0:
        raise ValueError(f"temperatures must be positive, got tau_s={tau_s}, tau_t={tau_t}")
    with torch.no_grad():
        v_q, a_q = v.detach(), a.detach()
        v_b = v_q if v_bank is None else v_bank.detach().to(dtype=v.dtype, device=v.device)
        a_b = a_q if a_bank is None else a_bank.detach().to(dtype=v.dtype, device=v.device)
        if kind == "bootstrap":
            scores = v_q @ v_b.t() / tau_s
        elif kind == "swapped":
            scores = a_q @ a_b.t() / tau_s
        else:
            s_kk = (v_b * a_b).sum(1)
            scores = s_kk[:, None] / tau_t + a_q @ v_b.t() / tau_s + s_kk[None, :] / tau_t
        similarity = torch.softmax(scores, dim=1)
        eye = torch.eye(v.shape[0], dtype=v.dtype, device=v.device)
        return (1.0 - lam) * eye + lam * similarity


@float32_loss
def soft_target_pair(kind: str, v: torch.Tensor, a: torch.Tensor, v_bank: torch.Tensor | None = None,
                     a_bank: torch.Tensor | None = None, lam: float = 0.5, tau_s: float = 0.02,
                     tau_t: float = 0.07) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets for v→a, targets for a→v): `soft_targets(kind, v, a, v_bank, a_bank, …)` and the same call
    with the modalities' roles swapped, `soft_targets(kind, a, v, a_bank, v_bank, …)`. Row i of the second
    matrix is the target over candidates v_j for the query a_i (the rows of logitsᵀ)."""
    forward = soft_targets(kind, v, a, v_bank, a_bank, lam=lam, tau_s=tau_s, tau_t=tau_t)
    backward = soft_targets(kind, a, v, a_bank, v_bank, lam=lam, tau_s=tau_s, tau_t=tau_t)
    return forward, backward


def _soft_xent_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if logits.dim() != 2 or logits.shape != targets.shape:
        raise ValueError(f"expects logits and targets of one N×C shape, got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    return -(targets.detach().to(dtype=logits.dtype) * F.log_softmax(logits, dim=1)).sum(1)


@float32_loss
def soft_target_xent(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean_i −Σ_j y_ij·log softmax_j(logits)_ij for N×C `logits` and soft targets y (detached); a scalar."""
    return _soft_xent_rows(logits, targets).mean()


@float32_loss
def robust_xid_loss(v: torch.Tensor, a: torch.Tensor, temperature: float, weights: torch.Tensor | None = None,
                    targets: torch.Tensor | Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Robust-xID loss over B×D L2-normalised `v`, `a`; returns a scalar.

    logits = v·aᵀ/τ. Per pair i, L_i = ½·(CE_i^{v→a} + CE_i^{a→v}), where CE_i^{v→a} is the cross-entropy of
    row i of `logits` (query v_i over candidates a_j) against the target row y^{v→a}_i and CE_i^{a→v} that of
    row i of logitsᵀ (query a_i over candidates v_j) against y^{a→v}_i.

    `targets`: None (one-hot, y = I, plain xID); a pair `(y_va, y_av)` of B×B matrices — the intended use, as
    returned by `soft_target_pair`, i.e. y_av computed by `soft_targets` with the roles of v and a swapped; or a
    single B×B tensor, then used for both directions as given (right only when it is meant for both, e.g. the
    identity or a symmetric matrix). Targets are detached.

    `weights`: None (L = mean_i L_i) or per-pair weights w_i of shape B (e.g. `faulty_positive_weights`), then
    L = Σ w_i·L_i / Σ w_i (`weighted_mean`, weights detached); the same w_i applies to both directions of pair i.

    With weights and targets both None this equals `infonce(v, a, τ)`.
    """
    if v.shape != a.shape or v.dim() != 2:
        raise ValueError(f"robust_xid_loss expects two B×D tensors of one shape, got {tuple(v.shape)} and "
                         f"{tuple(a.shape)}")
    n = v.shape[0]
    logits = v @ a.t() / temperature
    if targets is None:
        labels = torch.arange(n, device=v.device)
        per_va = F.cross_entropy(logits, labels, reduction="none")
        per_av = F.cross_entropy(logits.t(), labels, reduction="none")
    else:
        if isinstance(targets, torch.Tensor):
            y_va = y_av = targets
        else:
            if len(targets) != 2:
                raise ValueError("targets must be a B×B tensor or a pair (v→a targets, a→v targets)")
            y_va, y_av = targets
        for y in (y_va, y_av):
            if y.shape != (n, n):
                raise ValueError(f"targets must be {n}×{n}, got {tuple(y.shape)}")
        per_va = _soft_xent_rows(logits, y_va)
        per_av = _soft_xent_rows(logits.t(), y_av)
    per_pair = 0.5 * (per_va + per_av)
    if weights is None:
        return per_pair.mean()
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {tuple(weights.shape)}")
    return weighted_mean(per_pair, weights)


@float32_loss
def robust_xid_rows(v: torch.Tensor, a: torch.Tensor, v_all: torch.Tensor, a_all: torch.Tensor, offset: int,
                    temperature: float, targets: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Per-pair losses L_i = ½·(CE_i^{v→a} + CE_i^{a→v}) of the local rows `v`, `a` (B×D) when the batch is spread
    over several processes: candidates are the whole batch `v_all`, `a_all` (N×D, local rows at `offset`);
    `targets` None (one-hot at offset+i) or the local rows (y_va, y_av), each B×N, of `soft_target_pair` computed
    on the whole batch. Returns B losses; the caller averages or weights them as `robust_xid_loss` does."""
    if v.shape != a.shape or v.dim() != 2 or v_all.shape != a_all.shape or v_all.shape[1:] != v.shape[1:]:
        raise ValueError(f"robust_xid_rows expects B×D local and N×D global tensors, got {tuple(v.shape)}, "
                         f"{tuple(a.shape)}, {tuple(v_all.shape)}, {tuple(a_all.shape)}")
    logits_va = v @ a_all.t() / temperature
    logits_av = a @ v_all.t() / temperature
    if targets is None:
        labels = torch.arange(v.shape[0], device=v.device) + offset
        return 0.5 * (F.cross_entropy(logits_va, labels, reduction="none")
                      + F.cross_entropy(logits_av, labels, reduction="none"))
    y_va, y_av = targets
    return 0.5 * (_soft_xent_rows(logits_va, y_va) + _soft_xent_rows(logits_av, y_av))


# --------------------------------------------------------------------------------------------------------------
# Memory-bank negatives (AVID's form of xID, on which Robust-xID builds)
# --------------------------------------------------------------------------------------------------------------


@float32_loss
def bank_soft_targets(kind: str, v: torch.Tensor, a: torch.Tensor, v_cand: torch.Tensor, a_cand: torch.Tensor,
                      lam: float = 0.5, tau_s: float = 0.02, tau_t: float = 0.07) -> torch.Tensor:
    """B×C soft targets for the v→a query v_i over its C bank candidates (candidate 0 = the positive, item i's own
    bank row; the others its K sampled negatives): y_ic = (1−λ)·1[c=0] + λ·S_ic, with S_ic = softmax_c of the same
    estimators as `soft_targets`, computed against the candidates' bank features instead of the batch's:
    bootstrap v_i·v̄_c/τ_s, swapped a_i·ā_c/τ_s, cycle s_cc/τ_t + a_i·v̄_c/τ_s (s_cc = v̄_c·ā_c; the constant
    s_ii/τ_t cancels). `v_cand`, `a_cand`: B×C×D, the video and audio bank rows of each row's candidates. For the
    a→v direction swap the modalities. No gradient."""
    if kind not in SOFT_TARGET_KINDS:
        raise ValueError(f"unknown soft-target kind {kind!r}; expected one of {', '.join(SOFT_TARGET_KINDS)}")
    if v_cand.shape != a_cand.shape or v_cand.dim() != 3 or v_cand.shape[0] != v.shape[0]:
        raise ValueError(f"expected B×C×D candidates for B queries, got {tuple(v_cand.shape)} and "
                         f"{tuple(a_cand.shape)} for {tuple(v.shape)}")
    with torch.no_grad():
        v_q, a_q = v.detach(), a.detach()
        if kind == "bootstrap":
            scores = torch.einsum("bd,bcd->bc", v_q, v_cand) / tau_s
        elif kind == "swapped":
            scores = torch.einsum("bd,bcd->bc", a_q, a_cand) / tau_s
        else:
            scores = (v_cand * a_cand).sum(-1) / tau_t + torch.einsum("bd,bcd->bc", a_q, v_cand) / tau_s
        targets = lam * torch.softmax(scores, dim=1)
        targets[:, 0] += 1.0 - lam
        return targets


@float32_loss
def robust_bank_rows(v: torch.Tensor, a: torch.Tensor, bank_v: torch.Tensor, bank_a: torch.Tensor,
                     index: torch.Tensor, negatives: torch.Tensor, temperature: float,
                     targets: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Per-pair losses L_i = ½·(CE_i^{v→a} + CE_i^{a→v}) against memory-bank candidates: v_i is scored against the
    audio bank rows of [index_i, negatives_i…] (the positive first), a_i against the video bank rows of the same
    items, logits = cosine/τ; the banks carry no gradient. `targets`: None (the positive, candidate 0) or the pair
    (y_va, y_av) of B×(K+1) soft targets (`bank_soft_targets`). Returns B losses (the caller weights them)."""
    candidates = torch.cat([index.long().unsqueeze(1), negatives.long()], dim=1)  # B×(K+1)
    a_rows, v_rows = bank_a.detach()[candidates], bank_v.detach()[candidates]
    logits_va = torch.einsum("bd,bcd->bc", v, a_rows) / temperature
    logits_av = torch.einsum("bd,bcd->bc", a, v_rows) / temperature
    if targets is None:
        zeros = torch.zeros(v.shape[0], dtype=torch.long, device=v.device)
        return 0.5 * (F.cross_entropy(logits_va, zeros, reduction="none")
                      + F.cross_entropy(logits_av, zeros, reduction="none"))
    y_va, y_av = targets
    return 0.5 * (_soft_xent_rows(logits_va, y_va) + _soft_xent_rows(logits_av, y_av))
