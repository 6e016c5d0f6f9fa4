"""Encoding a mono signal into an open PyAV container: the one place that cuts it into frames, stamps their
timestamps and flushes the encoder (used by the synthetic world, the fingerprint corruptions and test media)."""

from __future__ import annotations

import av
import numpy as np


def mux_mono_audio(container, stream, samples: np.ndarray, sample_rate: int, frame_size: int = 1024,
                   sample_format: str = "fltp") -> None:
    """Encode `samples` (1-D, float32 for "fltp", int16 for "s16") through `stream` and mux every packet,
    including the encoder's buffered tail."""
    for start in range(0, len(samples), frame_size):
        frame = av.AudioFrame.from_ndarray(samples[None, start : start + frame_size], format=sample_format,
                                           layout="mono")
        frame.sample_rate, frame.pts = sample_rate, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
