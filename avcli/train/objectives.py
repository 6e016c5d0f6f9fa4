"""A method's objective: embeddings of a batch → loss and health statistics (one class per `method.kind`)."""

from __future__ import annotations

import torch

from avcli.losses import avts_margin_loss, infonce, retrieval_accuracy, sync_accuracy


class XIDObjective:
    """Cross-modal instance discrimination with in-batch negatives (METHODS.md §1)."""

    def __init__(self, cfg):
        self.temperature = cfg.temperature

    def __call__(self, model, video: torch.Tensor, spectrogram: torch.Tensor, labels: dict) -> tuple[torch.Tensor, dict]:
        v = model.embed_video(video).float()
        a = model.embed_audio(spectrogram).float()
        loss = infonce(v, a, self.temperature)
        return loss, {"xmodal_top1": retrieval_accuracy(v.detach(), a.detach())}


class AVTSObjective:
    """Synchronisation by contrastive margin loss (METHODS.md §3); the sync sampler supplies `labels["sync"]`
    (1 aligned, 0 shifted or from another item) and `labels["negative"]` (none / easy / hard / superhard)."""

    def __init__(self, cfg):
        self.margin = cfg.margin

    def __call__(self, model, video: torch.Tensor, spectrogram: torch.Tensor, labels: dict) -> tuple[torch.Tensor, dict]:
        v = model.embed_video(video).float()
        a = model.embed_audio(spectrogram).float()
        positive = labels["sync"].to(v.device).bool()
        loss = avts_margin_loss(v, a, positive, self.margin)
        stats = {"sync_accuracy": sync_accuracy(v.detach(), a.detach(), positive, self.margin)}
        hard = torch.tensor([kind == "hard" for kind in labels["negative"]], device=v.device)
        if bool(hard.any()):  # the curriculum's health: are shifted windows of the same video told apart?
            stats["sync_accuracy_hard"] = sync_accuracy(v.detach()[hard], a.detach()[hard], positive[hard], self.margin)
        return loss, stats


def build_objective(method_cfg):
    if method_cfg.kind == "xid":
        return XIDObjective(method_cfg)
    if method_cfg.kind == "avts":
        return AVTSObjective(method_cfg)
    raise ValueError(f"method.kind={method_cfg.kind!r} has no objective")
