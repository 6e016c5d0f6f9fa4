"""Clip-consistent video augmentation and evaluation transforms (METHODS.md §0).

Parameters are drawn from an explicit `torch.Generator` (one per sample, seeded from the sampler), so a sample's
augmentation depends only on the run seed and its position in the epoch: the same with any number of workers
and after a resume. Geometry and colour stay uint8 (cheap to move to the device); `normalize_video` turns a
batch into float on the device.
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def random_resized_crop_box(
    gen: torch.Generator, height: int, width: int, scale: tuple[float, float], ratio=(3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (top, left, h, w), drawn from `gen`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(gen, *scale)
        aspect = math.exp(_uniform(gen, *log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=gen))
            left = int(torch.randint(0, width - w + 1, (), generator=gen))
            return top, left, h, w
    side = min(height, width)  # fallback: centre crop of the short side
    return (height - side) // 2, (width - side) // 2, side, side


def augment_video(frames: torch.Tensor, size: int, augment, gen: torch.Generator) -> torch.Tensor:
    """T×H×W×3 uint8 → 3×T×size×size uint8 with one random crop, flip and colour jitter for the whole clip."""
    clip = frames.permute(0, 3, 1, 2)  # T×3×H×W, the layout torchvision's functional ops expect
    top, left, h, w = random_resized_crop_box(gen, clip.shape[-2], clip.shape[-1], tuple(augment.crop_scale))
    clip = TF.resized_crop(clip, top, left, h, w, [size, size], antialias=True)
    if augment.flip and float(torch.rand((), generator=gen)) < 0.5:
        clip = TF.horizontal_flip(clip)
    brightness, contrast, saturation, hue = augment.color_jitter
    ops = []
    if brightness > 0:
        ops.append((TF.adjust_brightness, _uniform(gen, max(0.0, 1 - brightness), 1 + brightness)))
    if contrast > 0:
        ops.append((TF.adjust_contrast, _uniform(gen, max(0.0, 1 - contrast), 1 + contrast)))
    if saturation > 0:
        ops.append((TF.adjust_saturation, _uniform(gen, max(0.0, 1 - saturation), 1 + saturation)))
    if hue > 0:
        ops.append((TF.adjust_hue, _uniform(gen, -hue, hue)))
    for i in torch.randperm(len(ops), generator=gen).tolist():
        op, factor = ops[i]
        clip = op(clip, factor)
    return clip.permute(1, 0, 2, 3).contiguous()


def eval_video(frames: torch.Tensor, size: int) -> torch.Tensor:
    """T×H×W×3 uint8 (already resized) → 3×T×size×size: centre crop."""
    clip = TF.center_crop(frames.permute(0, 3, 1, 2), [size, size])
    return clip.permute(1, 0, 2, 3).contiguous()


def normalize_video(batch: torch.Tensor) -> torch.Tensor:
    """B×3×T×H×W uint8 → float with ImageNet mean/std (on whatever device the batch is on)."""
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1, 1)
    return (batch.float() / 255.0 - mean) / std
