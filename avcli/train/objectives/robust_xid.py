"""Robust-xID (Morgado et al. 2021, METHODS.md §2): in-batch xID with faulty-positive weights and soft targets.

A memory bank keeps one momentum-averaged embedding per catalog item and modality. It supplies what the paper
computes on bank features: the agreement s_i = v̄_i·ā_i of each pair, its mean and spread over the dataset (μ, σ,
recomputed at every epoch start from the rows visited so far, or an EMA of batch statistics), and the v̄, ā the
soft-target estimators compare against. Weights and targets start after `start_epoch` (before it the bank holds
random rows, whose agreement says nothing). Where the catalog knows which pairs are faulty (the synthetic world
does), the mean weight of faulty and of clean pairs is reported: the health figure of the method. Such a catalog
also allows `weights.source: known_faulty`, an oracle that trains with w_min for the faulty pairs and 1 for the
others; the reported weights are still the rule's, so they say what the paper's rule would make of the
agreement that perfect weighting leaves (the upper bound of the method's separation).

With `bank_negatives: K` the contrast is AVID's memory-bank form instead of in-batch: each query is scored against
its own bank row (the positive) and K rows drawn uniformly from the other items, and soft targets are computed
over those K + 1 candidates from their bank features. The same weights apply.

Across several processes every rank gathers the batch of all ranks (embeddings with gradient, item indices),
computes weights, statistics and soft targets on that global batch exactly as one process would (bank negatives
come from one generator every rank holds in the same state), takes its own rows' share of the loss, and updates
its bank with every rank's embeddings — so all ranks keep one bank.
"""

from __future__ import annotations

import torch

from avcli.losses import (MemoryBank, bank_soft_targets, faulty_positive_weights, retrieval_accuracy,
                          robust_bank_rows, robust_xid_loss, robust_xid_rows, sample_negatives, soft_target_pair)
from avcli.losses.precision import full_precision
from avcli.train.distributed import all_gather, all_gather_with_grad, world_size
from avcli.train.objectives.base import Objective, TrainBatch
from avcli.train.objectives.xid import embed_pair


class RobustXIDObjective(Objective):
    def __init__(self, cfg, num_items: int, dim: int, faulty: list[bool] | None = None, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.banks = MemoryBank(num_items, dim)
        self.negatives = min(cfg.bank_negatives, num_items - 1) if cfg.bank_negatives else 0
        # bank negatives come from a generator of their own, saved with the objective (as XIDObjective's)
        self.generator = torch.Generator().manual_seed(seed)
        self.register_buffer("visited", torch.zeros(num_items, dtype=torch.bool))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        # μ, σ of the agreement: set at epoch starts (statistics "bank") or by the EMA of batches ("ema")
        self.register_buffer("mu", torch.zeros((), dtype=torch.float64))
        self.register_buffer("sigma", torch.ones((), dtype=torch.float64))
        self.register_buffer("stats_ready", torch.zeros((), dtype=torch.bool))
        known = faulty is not None and any(faulty)
        if cfg.weights is not None and cfg.weights.source == "known_faulty" and not known:
            raise ValueError("weights.source=known_faulty needs a catalog that marks its faulty pairs (the synthetic "
                             "world with faulty_fraction > 0); use source=agreement")
        self.register_buffer("faulty", torch.tensor(faulty if known else [], dtype=torch.bool), persistent=False)

    # ------------------------------------------------------------------ agreement statistics

    def agreement(self, index: torch.Tensor | None = None) -> torch.Tensor:
        v, a = self.banks.bank("video"), self.banks.bank("audio")
        if index is not None:
            v, a = v[index], a[index]
        return (v * a).sum(1)

    def on_epoch_start(self, epoch: int) -> None:
        self.set_epoch(epoch)
        weights = self.cfg.weights
        if weights is not None and weights.statistics == "bank" and bool(self.visited.any()):
            s = self.agreement()[self.visited].double()
            self.mu.fill_(float(s.mean()))
            self.sigma.fill_(float(s.std(unbiased=False)) if s.numel() > 1 else 1.0)
            self.stats_ready.fill_(True)

    @torch.no_grad()
    def _ema_update(self, s: torch.Tensor, gate: torch.Tensor) -> None:
        """Fold the batch's agreement into the EMA of μ and σ when `gate` (a device bool: every pair of the batch
        has a bank row already); the first folded batch sets them. Decided on the device, never read back."""
        m = self.cfg.weights.ema_momentum
        s = s.double()
        mean, std = s.mean(), s.std(unbiased=False)
        first = ~self.stats_ready
        mu = torch.where(first, mean, m * self.mu + (1 - m) * mean)
        sigma = torch.where(first, std, m * self.sigma + (1 - m) * std)
        self.mu.copy_(torch.where(gate, mu, self.mu))
        self.sigma.copy_(torch.where(gate, sigma, self.sigma))
        self.stats_ready.logical_or_(gate)

    def weights_for(self, s: torch.Tensor) -> torch.Tensor:
        w = self.cfg.weights
        return faulty_positive_weights(s, self.mu.to(s.dtype), self.sigma.to(s.dtype), w.delta, w.kappa, w.w_min)

    # ------------------------------------------------------------------ one step

    def forward(self, model, batch: TrainBatch) -> tuple[torch.Tensor, dict]:
        v, a = embed_pair(model, batch)
        index = batch.items[:, 0]
        # one process: the batch is the global batch; several: every rank's rows, in rank order
        distributed = world_size() > 1
        v_all, offset = all_gather_with_grad(v) if distributed else (v, 0)
        a_all, _ = all_gather_with_grad(a) if distributed else (a, 0)
        index_all = all_gather(index) if distributed else index
        epoch = self.host_epoch()
        stats = {"xmodal_top1": retrieval_accuracy(v_all.detach(), a_all.detach())}

        weights = None
        w_cfg = self.cfg.weights
        if w_cfg is not None:
            with full_precision():
                s = self.agreement(index_all).to(v.dtype)
            if w_cfg.statistics == "ema":
                self._ema_update(s, self.visited[index_all].all())
            if epoch >= w_cfg.start_epoch:
                # before μ and σ exist (EMA: until a batch of visited pairs) every pair weighs 1: the plain mean
                ready = self.stats_ready
                rule = torch.where(ready, self.weights_for(s), 1.0)
                stats.update(self._faulty_split(rule, index_all, "weight", ready))  # the rule's, whatever trains
                weights = rule
                if w_cfg.source == "known_faulty":
                    weights = torch.where(ready & self.faulty[index_all], w_cfg.w_min, 1.0).to(s.dtype)
                stats["weight_mean"] = torch.where(ready, weights.mean(), torch.nan)

        if self.negatives:
            loss = self._bank_loss(v, a, index_all, offset, weights, epoch, stats)
            self.banks.update(index_all, {"video": v_all.detach(), "audio": a_all.detach()}, self.cfg.bank_momentum)
            self.visited[index_all] = True
            return loss, stats

        targets = None
        t_cfg = self.cfg.soft_targets
        if t_cfg is not None and epoch >= t_cfg.start_epoch:
            v_bank, a_bank = self.banks.bank("video")[index_all], self.banks.bank("audio")[index_all]
            targets = soft_target_pair(t_cfg.estimator, v_all, a_all, v_bank.to(v.dtype), a_bank.to(v.dtype),
                                       lam=t_cfg.lam, tau_s=t_cfg.tau_s, tau_t=t_cfg.tau_t)
            stats["target_self"] = targets[0].diagonal().mean()  # weight left on the true pair

        if distributed:
            loss = self._local_share(v, a, v_all, a_all, offset, weights, targets)
        else:
            loss = robust_xid_loss(v, a, self.cfg.temperature, weights=weights, targets=targets)
        self.banks.update(index_all, {"video": v_all.detach(), "audio": a_all.detach()}, self.cfg.bank_momentum)
        self.visited[index_all] = True
        return loss, stats

    def _bank_loss(self, v, a, index_all, offset, weights, epoch, stats) -> torch.Tensor:
        """This rank's share of the weighted loss against bank candidates: its rows' positives and the negatives
        one process would draw for the global batch, soft targets from the candidates' bank features."""
        bank_v, bank_a = self.banks.bank("video"), self.banks.bank("audio")
        negatives = sample_negatives(index_all.to(bank_a.device), bank_a.shape[0], self.negatives, self.generator)
        rows = slice(offset, offset + v.shape[0])
        index, negatives = index_all[rows].to(bank_a.device), negatives[rows]
        targets = None
        t_cfg = self.cfg.soft_targets
        if t_cfg is not None and epoch >= t_cfg.start_epoch:
            candidates = torch.cat([index.long().unsqueeze(1), negatives], dim=1)
            v_cand, a_cand = bank_v[candidates].to(v.dtype), bank_a[candidates].to(v.dtype)
            settings = dict(lam=t_cfg.lam, tau_s=t_cfg.tau_s, tau_t=t_cfg.tau_t)
            targets = (bank_soft_targets(t_cfg.estimator, v, a, v_cand, a_cand, **settings),
                       bank_soft_targets(t_cfg.estimator, a, v, a_cand, v_cand, **settings))
            stats["target_self"] = targets[0][:, 0].mean()  # weight left on the true pair
        per_pair = robust_bank_rows(v, a, bank_v, bank_a, index, negatives, self.cfg.temperature, targets)
        if weights is None:
            return per_pair.mean()
        w = weights.detach().to(per_pair.dtype)
        return world_size() * (w[rows] * per_pair).sum() / w.sum().clamp(min=torch.finfo(per_pair.dtype).tiny)

    def _local_share(self, v, a, v_all, a_all, offset, weights, targets) -> torch.Tensor:
        """This rank's share: DDP averages the ranks' gradients, so the shares must average to the global loss
        Σ_i w_i·L_i / Σ_i w_i (sums over the global batch) — hence W·Σ_local w_i·L_i / Σ_global w_i."""
        rows = slice(offset, offset + v.shape[0])
        local_targets = None if targets is None else (targets[0][rows], targets[1][rows])
        per_pair = robust_xid_rows(v, a, v_all, a_all, offset, self.cfg.temperature, local_targets)
        if weights is None:
            return per_pair.mean()
        w = weights.detach().to(per_pair.dtype)
        total = w.sum().clamp(min=torch.finfo(per_pair.dtype).tiny)
        return world_size() * (w[rows] * per_pair).sum() / total

    # ------------------------------------------------------------------ health

    def _faulty_split(self, weights: torch.Tensor, index: torch.Tensor, name: str,
                      valid: torch.Tensor | None = None) -> dict:
        """Mean of `weights` over the faulty and over the clean pairs of `index`, as 0-d tensors (NaN where the
        batch has none of a kind, or where `valid` is False)."""
        if self.faulty.numel() == 0:
            return {}
        out = {}
        for kind, mask in (("faulty", self.faulty[index]), ("clean", ~self.faulty[index])):
            count = mask.sum()
            mean = (weights * mask).sum() / count.clamp(min=1)
            ok = count > 0 if valid is None else (count > 0) & valid
            out[f"{name}_{kind}"] = torch.where(ok, mean.double(), torch.nan)
        return out

    @torch.no_grad()
    def end_of_training_stats(self) -> dict:
        """Weights of every visited catalog pair from the final bank, split by the known faulty flag, and the
        separation of the two kinds' agreement, d′ = (mean clean − mean faulty) / σ (σ over every visited pair):
        for the rule's defaults a ratio of 1:2 needs d′ ≈ 2."""
        if self.cfg.weights is None or not bool(self.stats_ready) or not bool(self.visited.any()):
            return {}
        index = torch.nonzero(self.visited).squeeze(1)
        s = self.agreement(index).double()
        split = self._faulty_split(self.weights_for(s), index, "weight")
        stats = {f"bank_{k}": float(v) for k, v in split.items() if not torch.isnan(v)}
        agreement = {k: float(v) for k, v in self._faulty_split(s, index, "agreement").items() if not torch.isnan(v)}
        if len(agreement) == 2 and s.numel() > 1:
            stats.update({f"bank_{k}": v for k, v in agreement.items()})
            sigma = float(s.std(unbiased=False))
            if sigma > 0:
                stats["bank_agreement_dprime"] = (agreement["agreement_clean"] - agreement["agreement_faulty"]) / sigma
        return stats


class RobustXIDBankObjective(RobustXIDObjective):
    """Robust-xID with `bank_negatives`: the negatives' generator is part of the saved state, so a resumed run draws
    what an uninterrupted one would (a class of its own: in-batch checkpoints keep their keys)."""

    def get_extra_state(self):
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state) -> None:
        self.generator.set_state(state["generator"])
