"""Temporal self-supervision + contrastive learning (Jenni et al. 2023, METHODS.md §4).

The temporal sampler's three windows per sample (avcli/data/samplers/temporal.py), as video and audio slots:
  0 main: one speed from `speeds`, maybe reversed → speed and direction classification (both modalities);
    it is also the video–audio contrastive pair (its video and its own sound, transformed alike; with
    `video_audio_clip: both` the second clip gives a second pair);
  1 second: speed 1, forward, not overlapping main → intra-modal order (main, second), and the anchor of the
    video–video contrastive pair;
  2 cross: a video clip and an audio window at different times → inter-modal order; its video clip is the
    positive of the video–video pair.
Extra negatives: the anchor video played backwards (always), and for video–video the main clip when it is
transformed (another speed or reversed). Extra positives: the nearest neighbours of the positive in a queue of
past video embeddings, from `extra_positives_start_epoch` on (see there why not from the first step). With
`queue_negatives: K`, K past embeddings drawn uniformly from the same queue join each anchor's extra negatives
from that epoch on (the paper's "negatives sampled from the evolving feature space"; the draw is avcli's reading).
A slot the sampler could not place (item too short) is masked out of the terms that need it. Which rows hold
which windows is read from the batch's host view (the loader's CPU masks): rows are gathered by index on the
device and counted on the host, so no step waits for the device to learn a count.

Across several processes the contrastive terms use every rank's positives (gathered with gradient; ranks may
hold different numbers of usable video–video pairs), each rank's share being its rows' losses over the global
row count, and the queue takes every rank's anchors, so it stays one queue. The classification terms are
per-rank means (averaged over ranks by DDP). Heads unused in a step (a weight of 0, too few rows) need DDP's
find_unused_parameters, hence `uses_every_parameter = False`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avcli.losses import (FeatureQueue, TemporalHeads, binary_accuracy, contrastive_rows, contrastive_with_extras,
                          direction_loss, order_loss, speed_loss)
from avcli.losses.precision import full_precision
from avcli.train.distributed import all_gather, all_gather_with_grad, host_count, world_size
from avcli.train.objectives.base import Objective, TrainBatch, on_device

MAIN, SECOND, CROSS = 0, 1, 2


class TemporalObjective(Objective):
    uses_every_parameter = False

    def __init__(self, cfg, speeds: tuple[int, ...], video_dim: int, audio_dim: int, embed_dim: int, num_items: int):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("natural_speed", torch.tensor(list(speeds)) == 1, persistent=False)
        self.video_heads = TemporalHeads(video_dim, len(speeds), cfg.head_hidden)
        self.audio_heads = TemporalHeads(audio_dim, len(speeds), cfg.head_hidden)
        self.av_order = nn.Sequential(
            nn.Linear(video_dim + audio_dim, cfg.head_hidden), nn.ReLU(inplace=True), nn.Linear(cfg.head_hidden, 1)
        )
        wants_queue = cfg.extra_positives or cfg.queue_negatives
        self.queue = FeatureQueue(cfg.queue_size or num_items, embed_dim) if wants_queue else None
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))  # saved: a resumed run knows its epoch

    def on_epoch_start(self, epoch: int) -> None:
        self.set_epoch(epoch)

    def forward(self, model, batch: TrainBatch) -> tuple[torch.Tensor, dict]:
        cfg, labels = self.cfg, batch.labels
        vm, am = batch.video_mask, batch.audio_mask
        fv = present_windows(model.video, batch.video, batch.host_mask("video"))
        fa = present_windows(model.audio, batch.audio, batch.host_mask("audio"))
        terms, stats = {}, {}

        speed_class, reverse = labels["speed_class"].long(), labels["reverse"].long()
        heads = self._head_outputs(batch, fv, fa, vm, am)
        if cfg.speed:
            terms["speed"] = cfg.speed * (speed_loss(*heads["speed"]) + speed_loss(*heads["speed_audio"]))
        if cfg.direction:
            terms["direction"] = cfg.direction * (direction_loss(*heads["direction"])
                                                  + direction_loss(*heads["direction_audio"]))
        if cfg.order:
            terms["order"] = cfg.order * (order_loss(*heads["order"]) + order_loss(*heads["order_audio"]))
        if cfg.av_order:
            terms["av_order"] = cfg.av_order * order_loss(*heads["av_order"])
        for name, (logit, label) in heads.items():
            if name != "order_audio":  # the batch's health figures (metrics.jsonl) leave the audio order out
                stats[_accuracy_name(name)] = ((logit.argmax(1) == label).float().mean() if name.startswith("speed")
                                               else binary_accuracy(logit, label))
        if cfg.video_video or cfg.video_audio:
            contrastive, extra_stats = self._contrastive(model, batch, fv, fa, speed_class, reverse)
            terms.update(contrastive)
            stats.update(extra_stats)

        loss = sum(terms.values()) if terms else fv.sum() * 0.0
        stats.update({f"loss_{name}": value.detach() for name, value in terms.items()})
        return loss, stats

    def _head_outputs(self, batch: TrainBatch, fv, fa, vm, am) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{head: (its output, its labels)} for every trained pretext head, video and audio apart (`speed`,
        `speed_audio`, `direction`, `direction_audio`, `order`, `order_audio`, `av_order`): speed B×S logits
        against class indices, the others B logits against 0/1 labels, −1 where the pair's windows are not both
        present (masks on the labels' device)."""
        cfg, labels, out = self.cfg, batch.labels, {}
        towers = (("", self.video_heads, fv), ("_audio", self.audio_heads, fa))
        if cfg.speed:
            for suffix, heads, f in towers:
                out[f"speed{suffix}"] = (heads.speed(f[:, MAIN]), labels["speed_class"].long())
        if cfg.direction:
            for suffix, heads, f in towers:
                out[f"direction{suffix}"] = (heads.direction(f[:, MAIN]).squeeze(1), labels["reverse"].long())
        if cfg.order:
            order = torch.where(vm[:, SECOND], labels["order"].long(), -1)
            for suffix, heads, f in towers:
                out[f"order{suffix}"] = (heads.order_logit(f[:, MAIN], f[:, SECOND]), order)
        if cfg.av_order:
            av_order = torch.where(vm[:, CROSS] & am[:, CROSS], labels["av_order"].long(), -1)
            out["av_order"] = (self.av_order(torch.cat([fv[:, CROSS], fa[:, CROSS]], dim=1)).squeeze(1), av_order)
        return out

    @torch.no_grad()
    def held_out_stats(self, model, batches) -> dict:
        """Accuracy of every pretext head that is trained (weight > 0) on fixed held-out samples (an iterable of
        TrainBatch chunks), video and audio apart: `heldout_speed_accuracy[_audio]`,
        `heldout_direction_accuracy[_audio]`, `heldout_order_accuracy[_audio]`, `heldout_av_order_accuracy`.
        The caller puts the model and this objective in eval mode."""
        right: dict[str, torch.Tensor] = {}  # per head: (correct, labelled), summed over the chunks
        for part in batches:
            vm, am = part.host_mask("video"), part.host_mask("audio")
            fv = present_windows(model.video, part.video, vm)
            fa = present_windows(model.audio, part.audio, am)
            device = part.labels["reverse"].device
            for name, (output, label) in self._head_outputs(part, fv, fa, vm.to(device), am.to(device)).items():
                guess = output.argmax(1) if name.startswith("speed") else (output.reshape(-1) > 0).long()
                valid = label.reshape(-1) >= 0
                counts = torch.stack([((guess == label.reshape(-1)) & valid).sum(), valid.sum()]).double()
                right[name] = right[name] + counts if name in right else counts
        return {f"heldout_{_accuracy_name(name)}": float(correct / labelled) if labelled else float("nan")
                for name, (correct, labelled) in right.items()}

    def _contrastive(self, model, batch, fv, fa, speed_class, reverse) -> tuple[dict, dict]:
        cfg = self.cfg
        ev = F.normalize(present_windows(model.video_head, fv, batch.host_mask("video")), dim=-1)  # B×W×D
        ea = F.normalize(present_windows(model.audio_head, fa, batch.host_mask("audio")), dim=-1)
        terms, stats = {}, {}

        def extras_for(positive: torch.Tensor):
            if self.queue is None or self.host_epoch() < cfg.extra_positives_start_epoch:
                return None  # the queue still fills meanwhile, so its neighbours are ready at the start epoch
            return self.queue.nearest(positive, cfg.extra_positives)

        def with_queue_negatives(extra, mask, rows: int):
            """The transformed-clip negatives (rows × M × D and their mask, or None) with `queue_negatives` past
            embeddings per anchor appended, drawn uniformly from the queue (torch's generator: checkpointed)."""
            k = cfg.queue_negatives
            if not k or self.queue is None or self.host_epoch() < cfg.extra_positives_start_epoch or \
                    self.queue.stored() < k or rows == 0:
                return extra, mask
            pick = torch.randint(0, self.queue.stored(), (rows, k), device=self.queue.features.device)
            drawn = self.queue.features[pick].to(ev.dtype)
            if extra is None:
                return drawn, None
            if mask is None:
                mask = torch.ones(extra.shape[:2], dtype=torch.bool, device=extra.device)
            return torch.cat([extra, drawn], dim=1), torch.cat([mask, torch.ones_like(pick, dtype=torch.bool)], dim=1)

        def backwards(video: torch.Tensor) -> torch.Tensor:  # the same clip played the other way (dim 2 = time)
            return model.embed_video(video.flip(2)).float()

        if world_size() > 1:
            return self._contrastive_across_ranks(batch, ev, ea, speed_class, reverse, extras_for, backwards,
                                                  with_queue_negatives)
        if cfg.video_audio and int(self._video_audio_present(batch)[0].sum()) >= 2:  # clips and their own sound
            anchor_v, anchor_a, extra, extra_mask = self._video_audio_pairs(batch, ev, ea, speed_class, reverse,
                                                                             backwards)
            extra, extra_mask = with_queue_negatives(extra, extra_mask, len(anchor_a))
            a_to_v = contrastive_with_extras(anchor_a, anchor_v, cfg.temperature, extra, extras_for(anchor_v),
                                             extra_mask)
            v_to_a = contrastive_with_extras(anchor_v, anchor_a, cfg.temperature)
            terms["video_audio"] = cfg.video_audio * 0.5 * (a_to_v + v_to_a)
            stats["xmodal_top1"] = _top1(anchor_v, anchor_a)
            if self.queue is not None:
                self.queue.push(anchor_v.detach())
        pairs = self._video_video_rows(batch)
        if cfg.video_video and pairs.numel() >= 2:  # two natural-speed clips of one video
            anchor, positive = ev[:, SECOND].index_select(0, pairs), ev[:, CROSS].index_select(0, pairs)
            extra_neg, neg_mask = self._transformed_negatives(batch, ev, pairs, SECOND, speed_class, reverse, backwards)
            extra_neg, neg_mask = with_queue_negatives(extra_neg, neg_mask, len(anchor))
            terms["video_video"] = cfg.video_video * contrastive_with_extras(
                anchor, positive, cfg.temperature, extra_neg, extras_for(positive), neg_mask)
            if self.queue is not None and not cfg.video_audio:
                self.queue.push(anchor.detach())
        return terms, stats

    def _video_audio_present(self, batch) -> tuple[torch.Tensor, list[int]]:
        """(B×S host mask of the rows holding a video–audio pair in each slot, the S slots): every row's main clip,
        the natural clip where the sampler could place it, or both."""
        slots = {"main": [MAIN], "natural": [SECOND], "both": [MAIN, SECOND]}[self.cfg.video_audio_clip]
        video, audio = batch.host_mask("video"), batch.host_mask("audio")
        rows = {MAIN: torch.ones_like(video[:, MAIN]), SECOND: video[:, SECOND] & audio[:, SECOND]}
        return torch.stack([rows[slot] for slot in slots], dim=1), slots

    def _video_video_rows(self, batch) -> torch.Tensor:
        """Device indices of the rows holding both natural-speed clips (the video–video pair), from the host mask."""
        video = batch.host_mask("video")
        return on_device(rows_of(video[:, SECOND] & video[:, CROSS]), batch.video.device)

    def _video_audio_pairs(self, batch, ev, ea, speed_class, reverse, backwards):
        """(video anchors, their sounds, extra negatives, their mask) of every video–audio pair in the batch, row by
        row (a row's main pair, then its natural one): ranks holding consecutive rows then gather the pairs in the
        order one process has them, which keeps the queue of past anchors the same. With `both` the main and the
        natural clip of a video are each other's hard negatives, as clips of one title are under the movies
        sampler, so the main clip is not repeated among the natural clip's extra negatives: each anchor's only
        extra negative is its own video played backwards."""
        present, slots = self._video_audio_present(batch)
        device = batch.video.device
        flat = on_device(rows_of(present), device)  # (row, slot) positions, row by row

        def pick(x: torch.Tensor) -> torch.Tensor:
            return x[:, slots].flatten(0, 1).index_select(0, flat)

        anchor_v, anchor_a = pick(ev), pick(ea)
        if len(slots) == 1:
            rows = on_device(rows_of(present[:, 0]), device)
            extra, mask = self._transformed_negatives(batch, ev, rows, slots[0], speed_class, reverse, backwards)
            return anchor_v, anchor_a, extra, mask
        if not self.cfg.extra_negatives:
            return anchor_v, anchor_a, None, None
        return anchor_v, anchor_a, backwards(pick(batch.video))[:, None], None

    def _transformed_negatives(self, batch, ev, rows, slot, speed_class, reverse, backwards):
        """Extra negatives of an anchor clip (device row indices `rows`, `slot`) and their mask: the clip played
        backwards, and for a natural-speed anchor also the main clip of the same video when it runs at another
        speed or reversed."""
        if not self.cfg.extra_negatives:
            return None, None
        reversed_clip = backwards(batch.video[:, slot].index_select(0, rows))
        if slot == MAIN:
            return reversed_clip[:, None], None
        transformed = ~self.natural_speed[speed_class.index_select(0, rows)] | reverse.index_select(0, rows).bool()
        extra = torch.stack([reversed_clip, ev[:, MAIN].index_select(0, rows)], dim=1)
        return extra, torch.stack([torch.ones_like(transformed), transformed], dim=1)

    def _contrastive_across_ranks(self, batch, ev, ea, speed_class, reverse, extras_for, backwards,
                                  with_queue_negatives):
        """`_contrastive` with every rank's positives: a rank's share of a term is Σ_local L_i · W / N_global, so
        the shares average to the one-process mean over the global batch. Every branch that holds a collective
        is decided alike on all ranks."""
        cfg, world = self.cfg, world_size()
        terms, stats = {}, {}
        same_size = cfg.video_audio_clip == "main"  # the main clip is in every row; the natural one may be missing
        if cfg.video_audio and (same_size or host_count(self._video_audio_present(batch)[0]) >= 2):
            anchor_v, anchor_a, extra, extra_mask = self._video_audio_pairs(batch, ev, ea, speed_class, reverse,
                                                                             backwards)
            anchor_v_all, offset = all_gather_with_grad(anchor_v, same_size=same_size)
            anchor_a_all, _ = all_gather_with_grad(anchor_a, same_size=same_size)
            n = anchor_v_all.shape[0]
            extra, extra_mask = with_queue_negatives(extra, extra_mask, len(anchor_a))
            a_to_v = contrastive_rows(anchor_a, anchor_v_all, offset, cfg.temperature, extra, extras_for(anchor_v),
                                      extra_mask)
            v_to_a = contrastive_rows(anchor_v, anchor_a_all, offset, cfg.temperature)
            terms["video_audio"] = cfg.video_audio * 0.5 * (a_to_v.sum() + v_to_a.sum()) * world / n
            stats["xmodal_top1"] = _top1(anchor_v_all, anchor_a_all)
            if self.queue is not None:
                self.queue.push(anchor_v_all.detach())
        pairs = self._video_video_rows(batch)
        if cfg.video_video and host_count(pairs.numel()) >= 2:
            anchor, positive = ev[:, SECOND].index_select(0, pairs), ev[:, CROSS].index_select(0, pairs)
            positive_all, offset = all_gather_with_grad(positive, same_size=False)
            extra_neg, neg_mask = self._transformed_negatives(batch, ev, pairs, SECOND, speed_class, reverse, backwards)
            extra_neg, neg_mask = with_queue_negatives(extra_neg, neg_mask, len(anchor))
            losses = contrastive_rows(anchor, positive_all, offset, cfg.temperature, extra_neg, extras_for(positive),
                                      neg_mask)
            terms["video_video"] = cfg.video_video * losses.sum() * world / positive_all.shape[0]
            if self.queue is not None and not cfg.video_audio:
                self.queue.push(all_gather(anchor, same_size=False))
        return terms, stats


def _accuracy_name(head: str) -> str:
    """`speed_audio` → `speed_accuracy_audio`: the names metrics.jsonl has always used for the heads' accuracy."""
    base, audio = (head[: -len("_audio")], "_audio") if head.endswith("_audio") else (head, "")
    return f"{base}_accuracy{audio}"


def rows_of(mask: torch.Tensor) -> torch.Tensor:
    """Flat indices of the True entries of a host (CPU) mask, in row-major order."""
    return mask.flatten().nonzero().squeeze(1)


def present_windows(module: nn.Module, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`module` (an encoder or a projection head) applied to the windows that hold a clip (B×W×… with the B×W
    host `mask`), in float32; the empty windows' rows are zeros. An empty window (zeros the sampler could not
    place) never goes through the towers: it would cost a forward pass and, worse, pull the BatchNorm statistics
    of every layer towards those of a blank input. The rows are picked by an index made on the host."""
    index = on_device(rows_of(mask), windows.device)
    out = module(windows.flatten(0, 1).index_select(0, index)).float()
    full = out.new_zeros(mask.numel(), *out.shape[1:])
    return full.index_copy(0, index, out).view(*mask.shape, *out.shape[1:])


@torch.no_grad()
def _top1(video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """Fraction of videos whose most similar sound is their own (a 0-d tensor)."""
    with full_precision():
        sim = video.detach().float() @ audio.detach().float().t()
    return (sim.argmax(1) == torch.arange(len(video), device=sim.device)).float().mean()
