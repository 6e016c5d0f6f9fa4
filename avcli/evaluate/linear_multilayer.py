"""AVID-CMA's linear protocol on every stage of a frozen encoder (`--protocol linear-multilayer`; AVID-CMA
eval-action-recg-linear.py with configs/benchmark/kinetics/8x224x224-linear.yaml, utils/eval_utils.py MOSTModel).

The encoder stays frozen in eval mode. Each stage map conv2x–conv5x is max-pooled to a g×g grid (g = 12, 8, 6, 4;
over time too for video: AdaptiveMaxPool3d((1, g, g))), flattened, and fed to its own BatchNorm + linear
classifier; the four classifiers train together with Adam (lr 1e-4, no weight decay) for 12 epochs, lr × 0.1 at
epochs 6 and 9, on batches of 128 clips, one random clip of every training video per epoch (resize, random crop
and flip; AVID's colour jitter is 0 here). Testing scores each layer with the frozen protocols' clip sampling
(Clip@1 and Video@1 for video, per recording for sound); the result reports every layer and marks the best, as
the AVID audio SVM does. This sits beside `linear` (logistic regression on the pooled feature).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avcli.data.video_transforms import normalize_video
from avcli.evaluate.classifiers import averaged_top1, clip_top1
from avcli.evaluate.clip_features import VideoClips, collate_clips
from avcli.evaluate.clip_sampling import ClipPlan, Sampling
from avcli.log import get_logger
from avcli.models.stages import STAGE_NAMES
from avcli.stop_signals import data_loader
from avcli.tasks.base import Task

log = get_logger("probe")
GRIDS = (12, 8, 6, 4)  # MOSTModel pooling_ops: AdaptiveMaxPool3d((1, 12, 12)) … ((1, 4, 4))


@dataclass(frozen=True)
class MultilayerOptions:
    """AVID-CMA configs/benchmark/kinetics/8x224x224-linear.yaml: optimizer num_epochs 12, base_lr 1e-4,
    milestones [6, 9], gamma 0.1, weight_decay 0; dataset batch_size 128."""

    epochs: int = 12
    milestones: tuple[int, ...] = (6, 9)
    gamma: float = 0.1
    lr: float = 1e-4
    batch_size: int = 128
    workers: int = 0
    seed: int = 0


def pooled_maps(encoder: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """[B×(C·g²)] per stage: max over time (video), adaptive max pool to g×g, flattened."""
    out = []
    for grid, fmap in zip(GRIDS, encoder.stages(x)):
        if fmap.dim() == 5:
            fmap = fmap.amax(dim=2)
        out.append(F.adaptive_max_pool2d(fmap, grid).flatten(1).float())
    return out


class _LayerProbe:
    """One layer's trained classifier behind the frozen protocols' scoring interface."""

    def __init__(self, head: nn.Module, n_classes: int):
        self.head, self.classes_ = head.eval(), np.arange(n_classes)

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> np.ndarray:
        return torch.softmax(self.head(x), dim=1).numpy()


def _inputs(batch: dict, modality: str, frontend, device: torch.device) -> torch.Tensor:
    if modality == "video":
        return normalize_video(batch["video"].to(device))
    waves = batch["audio"]
    return frontend(waves.to(device))


def linear_multilayer(encoders, task: Task, modality: str, sampling: Sampling, options: MultilayerOptions,
                      device: torch.device) -> dict:
    """Train the four layer classifiers on the task's train split; every layer's test metrics and the best."""
    if modality == "audio" and sampling.padding == "none":
        raise ValueError("linear-multilayer needs fixed-length audio windows (an --audio-padding other than none)")
    tuned = copy.deepcopy(encoders)
    encoder = (tuned.model.video if modality == "video" else tuned.model.audio).to(device).eval()
    encoder.requires_grad_(False)
    frontend = tuned.frontend.to(device).eval()
    clip, train = tuned.recipe.data.clip, task.split("train")
    labels = torch.tensor([v.label for v in train])

    def dataset(videos, plan: ClipPlan, random_crop: bool) -> VideoClips:
        return VideoClips(videos, clip, plan, modality == "video", modality == "audio", task.audio_only,
                          sampling.audio_seconds, random_crop=random_crop, padding=sampling.padding)

    with torch.no_grad():  # the four layers' widths, from one clip
        probe_batch = collate_clips([dataset(train[:1], ClipPlan("even", 1), False)[0]])
        dims = [x.shape[1] for x in pooled_maps(encoder, _inputs(probe_batch, modality, frontend, device))]
    torch.manual_seed(options.seed)
    heads = nn.ModuleList(nn.Sequential(nn.BatchNorm1d(d), nn.Linear(d, len(task.classes))) for d in dims).to(device)
    optimizer = torch.optim.Adam(heads.parameters(), lr=options.lr, weight_decay=0.0)
    for epoch in range(options.epochs):
        for group in optimizer.param_groups:
            group["lr"] = options.lr * options.gamma ** sum(epoch >= m for m in options.milestones)
        heads.train()
        order = torch.Generator().manual_seed(options.seed * 1000 + epoch)
        loader = data_loader(dataset(train, ClipPlan("random", 1, options.seed * 1000 + epoch), True),
                             batch_size=options.batch_size, shuffle=True, generator=order,
                             num_workers=options.workers, collate_fn=collate_clips)
        total, count = 0.0, 0
        for batch in loader:
            with torch.no_grad():
                features = pooled_maps(encoder, _inputs(batch, modality, frontend, device))
            target = labels[batch["index"]].to(device)
            loss = sum(F.cross_entropy(head(x), target) for head, x in zip(heads, features))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + float(loss) * len(target), count + len(target)
        log.info("linear-multilayer %s epoch %d/%d: summed loss %.4f, lr %.2g", modality, epoch + 1, options.epochs,
                 total / max(count, 1), optimizer.param_groups[0]["lr"])

    heads.cpu()
    probes = [_LayerProbe(head, len(task.classes)) for head in heads]
    test = task.split("test")
    test_labels = [v.label for v in test]
    layers: dict[str, dict] = {name: {} for name in STAGE_NAMES}
    for metric, plan in sampling.tests:
        features = _layer_features(dataset(test, plan, False), plan.count, encoder, modality, frontend, device,
                                   options)
        score = clip_top1 if metric == "clip_top1" else averaged_top1
        for name, probe, x in zip(STAGE_NAMES, probes, features):
            layers[name][metric] = score(probe, x, test_labels)
    measured = layers[STAGE_NAMES[0]]  # Video@1 is the headline where there is one (as `top1` of the record)
    headline = next((m for m in ("video_top1", "top1") if m in measured), next(iter(measured)))
    best = max(STAGE_NAMES, key=lambda name: layers[name][headline])
    return {**layers[best], "layers": layers, "best_layer": best}


@torch.no_grad()
def _layer_features(clips: VideoClips, k: int, encoder, modality, frontend, device, options) -> list[torch.Tensor]:
    """Per layer, V×K×D features of every test video's K clips, on the CPU. A recording with fewer windows than K
    (planned from its length) fills its K slots with its windows in turn, as the frozen protocols do."""
    loader = data_loader(clips, batch_size=max(1, options.batch_size // max(k, 1)), shuffle=False,
                         num_workers=options.workers, collate_fn=collate_clips)
    parts: list[list[torch.Tensor]] = [[] for _ in GRIDS]
    for batch in loader:
        counts = batch["clips"].tolist()
        slots = torch.tensor([start + j % n for start, n in zip(np.cumsum([0, *counts[:-1]]), counts)
                              for j in range(k)])
        for store, x in zip(parts, pooled_maps(encoder, _inputs(batch, modality, frontend, device))):
            store.append(x.cpu()[slots])
    return [torch.cat(store).view(len(clips), k, -1) for store in parts]
