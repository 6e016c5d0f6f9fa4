"""AVTS (Korbar et al. 2018, METHODS.md §3): is this audio window in sync with this video clip?

Samples come from the sync-pair sampler: slot 0 of `video` is the clip, slot 0 of `audio` the window, and
labels["sync"] says whether they are aligned, labels["negative"] what kind of negative they are (the
curriculum of easy → easy + hard negatives lives in the sampler). Two losses: the contrastive margin loss on
L2-normalised embeddings (a pair is called in sync when ‖v − a‖ < η/2), or a fused classifier on the
concatenated embeddings with binary cross-entropy (in sync when its logit > 0).

Across several processes the sampled pairs are each rank's own (per-rank means, averaged by DDP); the batch
negatives pair each rank's videos with every rank's sounds (gathered with gradient), and a rank's share is its
pairs' mean scaled by its part of the global pair count — the one-process loss of the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avcli.losses import (FusedSyncClassifier, avts_margin_loss, best_threshold, cross_validated_sync_accuracy,
                          fused_sync_loss)
from avcli.losses.avts import masked_pair_loss
from avcli.losses.precision import full_precision
from avcli.train.distributed import all_gather, all_gather_with_grad, all_reduce_sum, world_size
from avcli.train.objectives.base import Objective, TrainBatch, on_device
from avcli.train.objectives.xid import embed_pair

# the kinds of pair the sync-pair sampler labels (labels["negative"]) and their names in the health figures
PAIR_KINDS = ("none", "easy", "hard", "superhard")
PAIR_NAMES = ("positive", "easy", "hard", "superhard")


class AVTSObjective(Objective):
    def __init__(self, cfg, dim: int, model=None, data=None):
        super().__init__()
        self.cfg = cfg
        self.bins = int(getattr(cfg, "sync_bins", 0) or 0)
        if self.bins:
            if model is None or data is None:
                raise ValueError("sync_bins needs the model and the data settings")
            self.uses_every_parameter = False  # the projection heads and the last stage are not used
            video_ch, audio_ch = _third_stage_channels(model, data)
            per_bin = max(dim // self.bins, 1)
            dim = per_bin * self.bins
            hidden = model.video_head.net[0].out_features
            self.video_bins = _bin_head(video_ch, hidden, per_bin)
            self.audio_bins = _bin_head(audio_ch, hidden, per_bin)
            video_s, audio_s = data.clip.frames / data.clip.fps, data.clip.audio_seconds
            # the part of the audio window the (centred) video clip covers: positives are aligned there
            self.audio_span = ((audio_s - video_s) / 2 / audio_s, (audio_s + video_s) / 2 / audio_s) \
                if audio_s > video_s else (0.0, 1.0)
        self.center = bool(getattr(cfg, "center_embeddings", False))
        if self.center:
            self.center_video = nn.BatchNorm1d(dim, affine=False)
            self.center_audio = nn.BatchNorm1d(dim, affine=False)
        self.classifier = FusedSyncClassifier(dim, cfg.fused_hidden, cfg.fused_interactions) if cfg.loss == "fused" else None

    def embed(self, model, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised (video, audio) sync embeddings of slot 0, float32: the projection heads' (as xID) or,
        with `sync_bins`, K time-aligned bins; optionally centred over the batch first."""
        if not self.bins and not self.center:
            return embed_pair(model, batch)
        video, audio = batch.video[:, 0], batch.audio[:, 0]
        if self.bins:  # the stage maps through the towers' own call: channels_last and torch.compile apply
            v = F.adaptive_max_pool1d(model.video(video, upto=3)[-1].amax(dim=(3, 4)), self.bins)  # B×C×K
            a = model.audio(audio, upto=3)[-1].amax(dim=3)  # B×C×T (spectrogram time, frequency pooled)
            length = a.shape[2]
            first = min(int(round(self.audio_span[0] * length)), length - 1)
            last = max(int(round(self.audio_span[1] * length)), first + 1)
            a = F.adaptive_max_pool1d(a[:, :, first:last], self.bins)
            v, a = self.video_bins(v).flatten(1), self.audio_bins(a).flatten(1)
        else:
            v, a = model.video_head.net(model.video(video)), model.audio_head.net(model.audio(audio))
        v, a = v.float(), a.float()
        with full_precision():
            if self.center:
                v, a = self.center_video(v), self.center_audio(a)
            return F.normalize(v, dim=1), F.normalize(a, dim=1)

    def predict(self, v: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(bool "in sync" per pair, fused logits or None)."""
        if self.classifier is None:
            return (v - a).norm(dim=1) < self.cfg.margin / 2, None
        logits = self.classifier(v, a)
        return logits > 0, logits

    def forward(self, model, batch: TrainBatch) -> tuple[torch.Tensor, dict]:
        v, a = self.embed(model, batch)
        positive = batch.labels["sync"].bool()
        predicted, logits = self.predict(v, a)
        if logits is None:
            loss = avts_margin_loss(v, a, positive, self.cfg.margin)
        else:
            loss = fused_sync_loss(logits, positive)
        stats = sync_stats(predicted.detach(), positive, pair_kinds(batch.labels["negative"], v.device))
        if self.cfg.batch_negatives:
            extra = self._batch_negative_loss(v, a, batch.items[:, 0], batch.items[:, 1])
            stats["loss_batch_negatives"] = extra.detach()
            loss = loss + extra
        return loss, stats

    def _batch_negative_loss(self, v, a, video_items, audio_items) -> torch.Tensor:
        """The sampled pairs' loss over every (video i, audio j) pairing of the batch whose items differ: easy
        negatives by construction (another video's sound), B·(B−1) of them instead of about B/2. Across ranks,
        this rank's videos against every rank's sounds (gathered with gradient), its share being its pairs' sum
        over the global pair count, which stays on the device: a masked mean, no pair list built on the host."""
        distributed = world_size() > 1
        a_all = all_gather_with_grad(a)[0] if distributed else a
        pairs = video_items[:, None] != (all_gather(audio_items) if distributed else audio_items)[None, :]
        scorer = None if self.classifier is None else self.classifier
        total, count = masked_pair_loss(v, a_all, pairs, self.cfg.margin, scorer)
        if not distributed:
            return total / count.clamp(min=1)
        return total * world_size() / all_reduce_sum(count.clone()).clamp(min=1)

    @torch.no_grad()
    def held_out_stats(self, model, batches, chunk: int = 64) -> dict:
        """Sync accuracy on the fixed held-out pairs (positives, easy and hard negatives), given as one TrainBatch
        (scored `chunk` at a time) or as an iterable of chunks: by the model's own rule (d < η/2, or logit > 0), and
        with a threshold calibrated on the pairs by 2-fold cross-validation (`sync_accuracy_calibrated`;
        `sync_threshold` is the threshold all pairs support); and the embedding geometry behind it (see
        `embedding_stats`). The caller puts the model and this objective in eval mode (no statistics change)."""
        if isinstance(batches, TrainBatch):
            batches = [batches.rows(slice(start, start + chunk)) for start in range(0, batches.size, chunk)]
        predicted, scores, videos, audios, positive, kinds = [], [], [], [], [], []
        device = None
        for part in batches:
            v, a = self.embed(model, part)
            decision, logits = self.predict(v, a)
            predicted.append(decision)
            scores.append(-(v - a).norm(dim=1) if logits is None else logits.reshape(-1))
            videos.append(v)
            audios.append(a)
            positive.append(part.labels["sync"].bool())
            kinds.extend(part.labels["negative"])
            device = v.device
        positive = torch.cat(positive)
        kinds = pair_kinds(kinds, device)
        stats = sync_stats(torch.cat(predicted), positive, kinds)
        score = torch.cat(scores)
        if score.numel() >= 4:  # the threshold the pairs support, scored on pairs it was not chosen on
            stats["sync_accuracy_calibrated"] = cross_validated_sync_accuracy(score, positive)
            threshold = best_threshold(score, positive)
            stats["sync_threshold"] = -threshold if self.classifier is None else threshold
        stats.update(embedding_stats(torch.cat(videos), torch.cat(audios), kinds))
        return {f"heldout_{k}": x for k, x in stats.items()}


def _bin_head(channels: int, hidden: int, out: int) -> nn.Module:
    """The same small MLP on every time bin (1×1 convolutions over B×C×K)."""
    return nn.Sequential(nn.Conv1d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv1d(hidden, out, 1))


@torch.no_grad()
def _third_stage_channels(model, data) -> tuple[int, int]:
    """Channels of each tower's third stage, from one forward pass on a dummy clip (eval mode: no statistics
    change)."""
    from avcli.media.audio_features import build_audio_frontend  # only shapes are needed

    clip = data.clip
    frontend = build_audio_frontend(data.audio, clip.sample_rate)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        video = torch.zeros(1, 3, clip.frames, clip.size, clip.size, device=device)
        audio = frontend(torch.zeros(1, int(round(clip.audio_seconds * clip.sample_rate)))).to(device)
        return model.video(video, upto=3)[-1].shape[1], model.audio(audio, upto=3)[-1].shape[1]
    finally:
        model.train(was_training)


def pair_kinds(negative_kinds: list[str], device: torch.device) -> torch.Tensor:
    """The sampler's kind of each pair ("none" = positive, "easy", "hard", "superhard") as codes on the device,
    built on the host and copied without waiting."""
    return on_device(torch.tensor([PAIR_KINDS.index(k) for k in negative_kinds], dtype=torch.long), device)


def _mean_per_kind(values: torch.Tensor, kinds: torch.Tensor, prefix: str) -> dict:
    """{prefix_name: mean of `values` over the pairs of that kind} as 0-d tensors, NaN for kinds absent here.
    `kinds`: codes (`pair_kinds`) or the sampler's list of names."""
    if not isinstance(kinds, torch.Tensor):
        kinds = pair_kinds(list(kinds), values.device)
    out = {}
    for code, name in enumerate(PAIR_NAMES):
        mask = (kinds == code).to(values.dtype)
        n = mask.sum()
        out[f"{prefix}_{name}"] = torch.where(n > 0, (values * mask).sum() / n.clamp(min=1), torch.nan)
    return out


def sync_stats(predicted: torch.Tensor, positive: torch.Tensor, kinds: torch.Tensor) -> dict:
    """Accuracy overall and per kind of pair (NaN for kinds the batch lacks), as 0-d tensors."""
    correct = (predicted == positive).float()
    return {"sync_accuracy": correct.mean(), **_mean_per_kind(correct, kinds, "sync_accuracy")}



def embedding_stats(v: torch.Tensor, a: torch.Tensor, kinds: torch.Tensor) -> dict:
    """Why sync accuracy is what it is: the mean pair distance ‖v−a‖ per kind of pair (positives must end up
    closer than negatives) and the mean cosine between different samples' embeddings of one modality
    (`mean_cosine_video`/`_audio`; near 1 = collapsed: every clip maps to about the same point, so no pair can be
    told from another, the state the margin loss settles in when it learns nothing, at d ≈ η/2 for every pair)."""
    stats = _mean_per_kind((v - a).norm(dim=1), kinds, "distance")
    for name, x in (("video", v), ("audio", a)):
        n = x.shape[0]
        if n > 1:
            with full_precision():
                gram = x @ x.t()
            stats[f"mean_cosine_{name}"] = (gram.sum() - gram.diagonal().sum()) / (n * (n - 1))
    return stats
