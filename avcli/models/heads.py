"""Projection heads and the audio-visual model that pairs two encoders with them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Projector(nn.Module):
    """MLP feature → hidden → … → out with ReLU between, `layers` linear layers in all; outputs are L2-normalised
    (METHODS.md §0). AVID-CMA's `proj_dim: [512, 512, 128]` is layers = 3. `batch_norm` adds BatchNorm after each
    hidden layer (SimCLR-style), which shortens the plateau at the start of contrastive training when the towers
    are small."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = False, layers: int = 2):
        super().__init__()
        parts, width = [], in_dim
        for _ in range(layers - 1):
            parts += [nn.Linear(width, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if batch_norm else [])
            parts.append(nn.ReLU(inplace=True))
            width = hidden_dim
        self.net = nn.Sequential(*parts, nn.Linear(width, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


class AudioVisualModel(nn.Module):
    """The two towers of every seed method: `video`/`audio` encoders and their projection heads."""

    def __init__(self, video: nn.Module, audio: nn.Module, hidden_dim: int, out_dim: int, batch_norm: bool = False,
                 layers: int = 2):
        super().__init__()
        self.video = video
        self.audio = audio
        self.video_head = Projector(video.out_dim, hidden_dim, out_dim, batch_norm, layers)
        self.audio_head = Projector(audio.out_dim, hidden_dim, out_dim, batch_norm, layers)

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self.video_head(self.video(clips))

    def embed_audio(self, spectrograms: torch.Tensor) -> torch.Tensor:
        return self.audio_head(self.audio(spectrograms))
