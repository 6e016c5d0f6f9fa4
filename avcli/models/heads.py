"""Projection heads and the audio-visual model that pairs two encoders with them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Projector(nn.Module):
    """MLP feature → hidden → out with ReLU between; outputs are L2-normalised (METHODS.md §0).
    `batch_norm` adds BatchNorm after the hidden layer (SimCLR-style), which shortens the plateau at the start
    of contrastive training when the towers are small."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = False):
        super().__init__()
        hidden = [nn.Linear(in_dim, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if batch_norm else [])
        self.net = nn.Sequential(*hidden, nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


class AudioVisualModel(nn.Module):
    """The two towers of every seed method: `video`/`audio` encoders and their projection heads."""

    def __init__(self, video: nn.Module, audio: nn.Module, hidden_dim: int, out_dim: int, batch_norm: bool = False):
        super().__init__()
        self.video = video
        self.audio = audio
        self.video_head = Projector(video.out_dim, hidden_dim, out_dim, batch_norm)
        self.audio_head = Projector(audio.out_dim, hidden_dim, out_dim, batch_norm)

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self.video_head(self.video(clips))

    def embed_audio(self, spectrograms: torch.Tensor) -> torch.Tensor:
        return self.audio_head(self.audio(spectrograms))
