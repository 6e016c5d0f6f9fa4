"""A method's objective: embeddings of a batch → loss and health statistics (one class per `method.kind`)."""

from __future__ import annotations

import torch

from avcli.losses import infonce, retrieval_accuracy


class XIDObjective:
    """Cross-modal instance discrimination with in-batch negatives (METHODS.md §1)."""

    def __init__(self, cfg):
        self.temperature = cfg.temperature

    def __call__(self, model, video: torch.Tensor, spectrogram: torch.Tensor) -> tuple[torch.Tensor, dict]:
        v = model.embed_video(video).float()
        a = model.embed_audio(spectrogram).float()
        loss = infonce(v, a, self.temperature)
        return loss, {"xmodal_top1": retrieval_accuracy(v.detach(), a.detach())}


def build_objective(method_cfg):
    if method_cfg.kind == "xid":
        return XIDObjective(method_cfg)
    raise ValueError(f"method.kind={method_cfg.kind!r} has no objective")
