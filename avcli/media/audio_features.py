"""Audio features (torchaudio), METHODS.md §0: log-mel, and AVID's linear log-power spectrogram.

Both map a batch of mono waveforms B×N to spectrograms B×1×T×F (time × frequency, AVID's orientation),
in dB clipped to `top_db` below each clip's peak, then normalised per frequency with stored statistics.
The statistics are buffers of `AudioFrontend`, fitted once on training clips and saved with the encoders, so a
checkpoint always carries the exact input normalisation its audio encoder was trained with.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torchaudio
from torch import nn


def power_to_db(power: torch.Tensor, top_db: float) -> torch.Tensor:
    """10·log10(power), floored at `top_db` below the peak of each clip (first dimension)."""
    db = 10.0 * torch.log10(power.clamp_min(1e-10))
    peak = db.flatten(1).amax(dim=1).view(-1, *([1] * (db.dim() - 1)))
    return torch.maximum(db, peak - top_db)


class LogMel(nn.Module):
    def __init__(self, sample_rate: int, n_mels: int, hop_seconds: float, window_seconds: float, top_db: float):
        super().__init__()
        win = int(round(window_seconds * sample_rate))
        n_fft = 1 << (win - 1).bit_length()
        self.hop = int(round(hop_seconds * sample_rate))
        self.top_db = top_db
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=win, hop_length=self.hop, n_mels=n_mels, power=2.0
        )
        self.n_bins = n_mels

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        frames = wave.shape[-1] // self.hop
        spec = self.mel(wave)[..., :frames]  # B×F×T
        return power_to_db(spec, self.top_db).transpose(1, 2).unsqueeze(1)


class AvidSpectrogram(nn.Module):
    """1024-point STFT power, bin 0 kept and the other 512 bins averaged in adjacent pairs → 257 bins."""

    def __init__(self, sample_rate: int, hop_seconds: float, top_db: float, n_fft: int = 1024):
        super().__init__()
        self.n_fft = n_fft
        self.hop = int(round(hop_seconds * sample_rate))
        self.top_db = top_db
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.n_bins = n_fft // 4 + 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        frames = wave.shape[-1] // self.hop
        stft = torch.stft(
            wave, self.n_fft, self.hop, window=self.window, center=True, pad_mode="constant", return_complex=True
        )
        power = stft.abs().pow(2)[..., :frames]  # B×(n_fft/2+1)×T
        merged = torch.cat([power[:, :1], power[:, 1:].unflatten(1, (self.n_fft // 4, 2)).mean(2)], dim=1)
        return power_to_db(merged, self.top_db).transpose(1, 2).unsqueeze(1)


class AudioFrontend(nn.Module):
    """Waveform → normalised spectrogram; per-frequency mean/std are buffers fitted with `fit`."""

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.zeros(features.n_bins))
        self.register_buffer("std", torch.ones(features.n_bins))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, waves: torch.Tensor | Sequence[torch.Tensor], batch: int = 64) -> None:
        """Per-frequency mean and std over every frame of `waves` (B×N, or 1-D waves of any lengths), computed
        `batch` waves at a time on this module's device, whatever device the waves are on."""
        device = self.mean.device
        total = torch.zeros(self.features.n_bins, dtype=torch.float64, device=device)
        squares, frames = torch.zeros_like(total), 0
        if not isinstance(waves, torch.Tensor) and len({w.shape for w in waves}) == 1:
            waves = torch.stack(list(waves))
        groups = waves.split(batch) if isinstance(waves, torch.Tensor) else [w[None] for w in waves]
        for group in groups:
            spec = self.features(group.to(device)).flatten(0, 2).double()  # frames×F
            total += spec.sum(0)
            squares += spec.pow(2).sum(0)
            frames += spec.shape[0]
        mean = total / frames
        var = (squares - frames * mean.pow(2)).clamp_min(0) / max(frames - 1, 1)
        self.mean.copy_(mean)
        self.std.copy_(var.sqrt().clamp_min(1e-3))
        self.fitted.fill_(True)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return (self.features(wave) - self.mean) / self.std


def build_audio_frontend(features_cfg, sample_rate: int) -> AudioFrontend:
    """From the recipe's `data.audio` section (avcli.recipe.schema.AudioFeatures)."""
    if features_cfg.kind == "log_mel":
        features: nn.Module = LogMel(
            sample_rate, features_cfg.n_mels, features_cfg.hop_seconds, features_cfg.window_seconds, features_cfg.top_db
        )
    else:
        features = AvidSpectrogram(sample_rate, features_cfg.hop_seconds, features_cfg.top_db)
    return AudioFrontend(features)
