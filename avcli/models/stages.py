"""Intermediate features of an encoder: the maps of its four stages (conv2x..conv5x), average-pooled to a fixed
grid and flattened, for multi-layer probes (METHODS.md §6: the audio SVM protocol pools conv2x..conv5x to
12×12, 8×8, 6×6 and 4×4).

Every encoder in `avcli.models` has `stages(x)`, which returns the four stage maps; a spectrogram encoder's maps
are B×C×T×F, a video encoder's B×C×T×H×W (pooled over time to a single step, then over space to the grid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STAGE_NAMES = ("conv2x", "conv3x", "conv4x", "conv5x")
AUDIO_SVM_GRIDS = (12, 8, 6, 4)


def pooled_stages(encoder: nn.Module, x: torch.Tensor, grids: tuple[int, ...] = AUDIO_SVM_GRIDS) -> dict[str, torch.Tensor]:
    """{"conv2x": B×(C2·g²), ...}: each stage's map average-pooled to g×g (adaptive, so any input length works)."""
    out = {}
    for name, grid, fmap in zip(STAGE_NAMES, grids, encoder.stages(x)):
        if fmap.dim() == 5:
            fmap = fmap.mean(dim=2)
        out[name] = F.adaptive_avg_pool2d(fmap, grid).flatten(1)
    return out
