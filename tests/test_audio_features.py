"""Audio features: shapes, AVID's bin merging, dB range, normalisation statistics."""

from __future__ import annotations

import math

import pytest
import torch

from avcli.media.audio_features import AvidSpectrogram, LogMel, build_audio_frontend, power_to_db
from avcli.recipe.schema import AudioFeatures


def test_log_mel_shape_is_time_by_mels():
    spec = LogMel(16000, n_mels=40, hop_seconds=0.01, window_seconds=0.025, top_db=80)(torch.randn(3, 32000))
    assert spec.shape == (3, 1, 200, 40)


def test_avid_spectrogram_is_200_by_257_for_two_seconds_at_24k():
    spec = AvidSpectrogram(24000, hop_seconds=0.01, top_db=100)(torch.randn(2, 48000))
    assert spec.shape == (2, 1, 200, 257)


def test_avid_bins_average_adjacent_pairs_and_keep_dc():
    """A pure tone in STFT bin 2k+1 or 2k+2 lands in merged bin k+1; bin 0 stays alone."""
    sr, n_fft = 24000, 1024
    features = AvidSpectrogram(sr, 0.01, top_db=200)
    t = torch.arange(sr) / sr
    for stft_bin in (101, 102):
        tone = torch.sin(2 * math.pi * stft_bin * sr / n_fft * t)[None]
        spec = features(tone)[0, 0]
        assert int(spec[50].argmax()) == (stft_bin + 1) // 2


def test_power_to_db_floors_at_top_db_below_peak():
    power = torch.tensor([[1.0, 1e-3, 1e-12]])
    db = power_to_db(power, top_db=50)
    assert db[0].tolist() == pytest.approx([0.0, -30.0, -50.0])


def test_frontend_fit_normalises_each_frequency():
    frontend = build_audio_frontend(AudioFeatures(n_mels=16), 16000)
    waves = torch.randn(8, 16000) * torch.linspace(0.1, 1, 8)[:, None]
    assert not bool(frontend.fitted)
    frontend.fit(waves)
    out = frontend(waves)
    assert bool(frontend.fitted)
    assert out.mean(dim=(0, 1, 2)).abs().max() < 1e-4
    assert (out.std(dim=(0, 1, 2)) - 1).abs().max() < 1e-2
