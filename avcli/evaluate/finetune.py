"""The fine-tuning protocol (METHODS.md §6, AVID-CMA eval-action-recg.py with configs/benchmark/*/8at16-fold*.yaml):
the whole encoder plus dropout 0.5 and a linear classifier on its pooled feature, Adam at lr 1e-4.

The run starts with `warmup_epochs` that train only the classifier (AVID's `warmup_classifier`: the encoder's
weights frozen while its batch-norm statistics follow the task's data, as AVID's model.train(True) does;
`warmup_bn: freeze` keeps them untouched instead, so that a random classifier's first gradients meet the
pretrained statistics), then `epochs` epochs of the whole network with the learning rate multiplied by `gamma` at
each milestone (counted from the start of full fine-tuning). Each epoch draws the task's `clips_per_video` random
clips of every training video (UCF101 10, HMDB51 25), shuffled together into batches of `batch_size` clips
(64), each augmented by a random resized crop of 8–100 % of the frame, a flip and the task's colour jitter; a
sound is a random window, padded as the probe pads a short recording. Testing is the frozen protocols' clip
sampling scored with the fine-tuned network: Clip@1 and Video@1 for video tasks, per-recording top-1 for audio
tasks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset

from avcli.data.video_transforms import normalize_video
from avcli.recipe.schema import Augment
from avcli.evaluate.classifiers import averaged_top1, clip_top1
from avcli.evaluate.clip_features import VideoClips, collate_clips, extract_clip_features
from avcli.evaluate.clip_sampling import ClipPlan, Sampling
from avcli.log import get_logger
from avcli.stop_signals import data_loader
from avcli.tasks.base import FinetuneSchedule, Task

log = get_logger("probe")
DEFAULT_SCHEDULE = FinetuneSchedule(epochs=10, milestones=(3, 6, 8))  # HMDB51's, for tasks without their own


@dataclass(frozen=True)
class FinetuneOptions:
    schedule: FinetuneSchedule
    lr: float = 1e-4
    batch_size: int | None = None  # clips per batch; None: the schedule's (AVID 64)
    dropout: float = 0.5
    workers: int = 0
    seed: int = 0
    warmup_bn: str = "update"  # "update": AVID's warm-up (statistics follow the task); "freeze": untouched


class _HeadProbe:
    """The fine-tuned classifier behind the frozen protocols' scoring interface (softmax over all classes)."""

    def __init__(self, head: nn.Module, n_classes: int):
        self.head, self.classes_ = head.eval(), np.arange(n_classes)

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> np.ndarray:
        return torch.softmax(self.head(x), dim=1).numpy()


def epoch_clips(videos, clip, schedule: FinetuneSchedule, seed: int, modality: str, audio_only: bool,
                sampling: Sampling) -> ConcatDataset:
    """One fine-tuning epoch's samples: `clips_per_video` random clips of every video, one clip per sample (each
    from a plan of its own), so that a batch mixes clips of many videos as AVID's clip-level dataset does."""
    augment = Augment(crop_scale=(schedule.min_area, 1.0), flip=True, color_jitter=schedule.color_jitter)
    return ConcatDataset([
        VideoClips(videos, clip, ClipPlan("random", 1, seed * 100 + k), modality == "video", modality == "audio",
                   audio_only, sampling.audio_seconds, random_crop=augment, padding=sampling.padding)
        for k in range(schedule.clips_per_video)
    ])


def finetune(encoders, task: Task, modality: str, sampling: Sampling, options: FinetuneOptions,
             device: torch.device) -> dict:
    """Fine-tune a copy of the `modality` encoder on the task's train split; the test metrics."""
    tuned = copy.deepcopy(encoders)  # every split starts again from the checkpoint's weights
    encoder = tuned.model.video if modality == "video" else tuned.model.audio
    frontend = tuned.frontend.to(device).eval()
    torch.manual_seed(options.seed)
    head = nn.Sequential(nn.Dropout(options.dropout), nn.Linear(encoder.out_dim, len(task.classes))).to(device)
    encoder.to(device)
    train = task.split("train")
    labels = torch.tensor([v.label for v in train])
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(head.parameters()), lr=options.lr)
    schedule = options.schedule
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(schedule.warmup_epochs + schedule.epochs):
        warming_up = epoch < schedule.warmup_epochs
        if not warming_up:
            full = epoch - schedule.warmup_epochs
            factor = schedule.gamma ** sum(full >= m for m in schedule.milestones)
            for group in optimizer.param_groups:
                group["lr"] = options.lr * factor
        encoder.train(not warming_up or options.warmup_bn == "update")
        encoder.requires_grad_(not warming_up)
        head.train()
        dataset = epoch_clips(train, tuned.recipe.data.clip, schedule, options.seed * 1000 + epoch, modality,
                              task.audio_only, sampling)
        order = torch.Generator().manual_seed(options.seed * 1000 + epoch)
        loader = data_loader(dataset, batch_size=options.batch_size or schedule.batch_size, shuffle=True,
                             generator=order, num_workers=options.workers, collate_fn=collate_clips)
        total, count = 0.0, 0
        for batch in loader:
            if modality == "video":
                x = normalize_video(batch["video"].to(device))
            else:
                with torch.no_grad():
                    waves = batch["audio"]  # a list: windows of the recordings' own lengths (padding none)
                    x = frontend(waves.to(device)) if torch.is_tensor(waves) else [frontend(w.to(device))
                                                                                    for w in waves]
            logits = head(encoder(x) if torch.is_tensor(x) else torch.cat([encoder(spec) for spec in x]))
            loss = loss_fn(logits, labels[batch["index"]].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(batch["index"]), count + len(batch["index"])
        log.info("fine-tune %s epoch %d/%d%s: loss %.4f, lr %.2g", modality, epoch + 1,
                 schedule.warmup_epochs + schedule.epochs, " (classifier only)" if warming_up else "",
                 total / max(count, 1), optimizer.param_groups[0]["lr"])
    encoder.eval()
    probe = _HeadProbe(head.cpu(), len(task.classes))
    test = task.split("test")
    test_labels = [v.label for v in test]
    metrics = {}
    for metric, plan in sampling.tests:
        features = extract_clip_features(tuned, test, plan, {modality}, device, task.audio_only,
                                         sampling.audio_seconds, workers=options.workers,
                                         description=f"test {plan.name}", padding=sampling.padding)[modality]
        score = clip_top1 if metric == "clip_top1" else averaged_top1
        metrics[metric] = score(probe, features, test_labels)
    return metrics
