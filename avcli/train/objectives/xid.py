"""xID (METHODS.md §1) and the movies/TV method (§5): symmetric cross-modal InfoNCE on slot 0 of every sample.

In-batch: every other clip of the batch is a negative; with the hierarchical sampler, the C − 1 other clips of
the same title are among them (Kalayeh et al.'s hard negatives). Memory bank (AVID): K negatives per query
drawn from banks holding one momentum-averaged embedding per catalog item, NCE with a constant Z or softmax.

Across several processes (torchrun) both compute what one process computes on the global batch: in-batch
negatives are every rank's embeddings, gathered with gradient, and each rank takes its rows' share of the loss
(`infonce_local`, labels offset by rank); bank negatives for the global batch come from the one generator every
rank holds in the same state, and every rank updates its banks with the embeddings of all ranks.
"""

from __future__ import annotations

import torch

from avcli.losses import (MemoryBank, PartitionEstimate, cross_modal_bank_loss, infonce, infonce_local,
                          retrieval_accuracy, sample_negatives)
from avcli.losses.precision import full_precision
from avcli.train.distributed import all_gather, all_gather_with_grad, world_size
from avcli.train.objectives.base import Objective, TrainBatch


def embed_pair(model, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised (video, audio) embeddings of slot 0, in float32 for the loss."""
    return model.embed_video(batch.video[:, 0]).float(), model.embed_audio(batch.audio[:, 0]).float()


class XIDObjective(Objective):
    def __init__(self, cfg, num_items: int, dim: int, seed: int = 0):
        super().__init__()
        self.temperature = cfg.temperature
        self.bank_cfg = cfg.memory_bank
        if self.bank_cfg is not None:
            if num_items < 2:
                raise ValueError("method.memory_bank needs at least 2 catalog items (negatives exclude self)")
            self.negatives = min(self.bank_cfg.negatives, num_items - 1)
            self.banks = MemoryBank(num_items, dim)
            self.z = PartitionEstimate()  # one Z shared by both directions, set by the first batch's v→a scores
            # negatives come from a generator of their own, saved with the objective: a resumed run draws the
            # same negatives as an uninterrupted one (the global stream is also drawn by the data loader)
            self.generator = torch.Generator().manual_seed(seed)

    def get_extra_state(self):
        return {"generator": self.generator.get_state()} if self.bank_cfg is not None else {}

    def set_extra_state(self, state) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])

    def forward(self, model, batch: TrainBatch) -> tuple[torch.Tensor, dict]:
        v, a = embed_pair(model, batch)
        if world_size() > 1:
            return self._forward_across_ranks(v, a, batch.items[:, 0])
        stats = {"xmodal_top1": retrieval_accuracy(v.detach(), a.detach())}
        if self.bank_cfg is None:
            return infonce(v, a, self.temperature), stats
        index = batch.items[:, 0]
        loss = cross_modal_bank_loss(
            v, a, index, self.banks.bank("video"), self.banks.bank("audio"), self.negatives, self.temperature,
            generator=self.generator, form=self.bank_cfg.loss, z_v=self.z if self.bank_cfg.loss == "nce" else None,
        )
        self.banks.update(index, {"video": v.detach(), "audio": a.detach()}, self.bank_cfg.momentum)
        if self.bank_cfg.loss == "nce":
            stats["partition_z"] = self.z.z.clone()
        return loss, stats

    def _forward_across_ranks(self, v: torch.Tensor, a: torch.Tensor, index: torch.Tensor):
        """This rank's share of the one-process loss on the global batch (the rows of every rank, in rank order)."""
        v_all, offset = all_gather_with_grad(v)
        a_all, _ = all_gather_with_grad(a)
        stats = {"xmodal_top1": retrieval_accuracy(v_all.detach(), a_all.detach())}
        if self.bank_cfg is None:
            return infonce_local(v, a, v_all, a_all, offset, self.temperature), stats
        bank_v, bank_a = self.banks.bank("video"), self.banks.bank("audio")
        index_all = all_gather(index).to(bank_a.device).long()
        # the draw one process would make for the global batch (the generator advances alike on every rank)
        negatives = sample_negatives(index_all, bank_a.shape[0], self.negatives, self.generator)
        rows = slice(offset, offset + v.shape[0])
        loss = cross_modal_bank_loss(
            v, a, index_all[rows], bank_v, bank_a, self.negatives, self.temperature, form=self.bank_cfg.loss,
            z_v=self.z if self.bank_cfg.loss == "nce" else None, negatives=negatives[rows],
        )  # Z's first-batch mean is averaged over ranks by PartitionEstimate itself
        self.banks.update(index_all, {"video": v_all.detach(), "audio": a_all.detach()}, self.bank_cfg.momentum)
        if self.bank_cfg.loss == "nce":
            stats["partition_z"] = self.z.z.clone()
        return loss, stats


class MoviesObjective(Objective):
    """Symmetric InfoNCE over hierarchical batches; reports how often a wrong top-1 match is a clip of the same
    title (the confusion the hierarchical negatives are there to remove)."""

    def __init__(self, cfg, titles: list[str]):
        super().__init__()
        self.temperature = cfg.temperature
        ids = {t: k for k, t in enumerate(sorted(set(titles)))}
        self.register_buffer("title_of_item", torch.tensor([ids[t] for t in titles]), persistent=False)

    def forward(self, model, batch: TrainBatch) -> tuple[torch.Tensor, dict]:
        v, a = embed_pair(model, batch)
        index = batch.items[:, 0]
        if world_size() > 1:  # in-batch negatives from every rank (see the module docstring)
            v_all, offset = all_gather_with_grad(v)
            a_all, _ = all_gather_with_grad(a)
            loss = infonce_local(v, a, v_all, a_all, offset, self.temperature)
            return loss, self._stats(v_all.detach(), a_all.detach(), all_gather(index))
        loss = infonce(v, a, self.temperature)
        return loss, self._stats(v, a, index)

    @torch.no_grad()
    def _stats(self, v: torch.Tensor, a: torch.Tensor, index: torch.Tensor) -> dict:
        with full_precision():
            best = (v @ a.t()).argmax(1)
        wrong = best != torch.arange(len(best), device=best.device)
        title = self.title_of_item[index]
        same_title = title[best] == title
        return {
            "xmodal_top1": (~wrong).float().mean(),
            "same_title_errors": (wrong & same_title).sum() / wrong.sum().clamp(min=1),
        }
