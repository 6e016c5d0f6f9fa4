"""Media written on the fly with PyAV for tests: frames and sounds whose timing is known exactly."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from avcli.media.mux_audio import mux_mono_audio


def write_counter_video(
    path: Path, frames: int = 50, fps: int = 25, size: tuple[int, int] = (48, 32), sample_rate: int = 16000,
    clicks_s: tuple[float, ...] = (), audio: bool = True, gop: int | None = None, codec: str = "libx264",
) -> Path:
    """Frame k is flat grey of value 4·k (so the frame index can be read back); audio is silence with a short
    full-scale click at each time in `clicks_s`."""
    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = gop or fps
        if codec == "libx264":
            video.options = {"crf": "0", "preset": "ultrafast"}
        if audio:
            sound = container.add_stream("aac", rate=sample_rate)
            sound.layout = "mono"
        for k in range(frames):
            image = np.full((height, width, 3), min(4 * k, 255), np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio:
            n = int(frames / fps * sample_rate)
            signal = np.zeros(n, np.float32)
            for t in clicks_s:
                start = int(round(t * sample_rate))
                signal[start : start + 80] = 0.9
            mux_mono_audio(container, sound, signal, sample_rate)
    return path


def frame_index(frame: np.ndarray) -> int:
    """Inverse of write_counter_video's grey level."""
    return int(round(float(frame.mean()) / 4))


def first_onset(audio: np.ndarray, sample_rate: int, threshold: float = 0.3) -> float:
    above = np.flatnonzero(np.abs(audio) > threshold)
    return above[0] / sample_rate if len(above) else float("nan")


def write_tone_video(
    path: Path, colour: tuple[int, int, int], tone_hz: float, seconds: float = 1.5, fps: int = 8,
    size: tuple[int, int] = (40, 30), sample_rate: int = 16000, codec: str = "mpeg4", audio: bool = True,
) -> Path:
    """A flat `colour` picture (a lighter square drifting across it, so clips differ in time) with a steady sine
    tone: a class that a probe of any encoder can tell apart by colour or by pitch."""
    width, height = size
    frames = int(round(seconds * fps))
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if audio:
            sound = container.add_stream("aac", rate=sample_rate)
            sound.layout = "mono"
        for k in range(frames):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = colour
            x = (3 * k) % max(width - 8, 1)
            image[4:12, x : x + 8] = np.minimum(np.asarray(colour) + 80, 255)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio:
            _encode_tone(container, sound, tone_hz, seconds, sample_rate)
    return path


def write_tone_audio(path: Path, tone_hz: float, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    """A sound file (no video stream; the codec follows the extension: .wav PCM, .flac FLAC) with a sine tone."""
    codec = {".wav": "pcm_s16le", ".flac": "flac"}[Path(path).suffix]
    with av.open(str(path), "w") as container:
        sound = container.add_stream(codec, rate=sample_rate)
        sound.layout = "mono"
        _encode_tone(container, sound, tone_hz, seconds, sample_rate, sample_format="s16")
    return path


def write_chirp_audio(path: Path, f0: float, f1: float, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    """A WAV file whose tone sweeps from f0 to f1 Hz: no two windows of it sound alike (a steady tone's do)."""
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    signal = (0.5 * np.sin(phase) * 32767).astype(np.int16)
    with av.open(str(path), "w") as container:
        sound = container.add_stream("pcm_s16le", rate=sample_rate)
        sound.layout = "mono"
        mux_mono_audio(container, sound, signal, sample_rate, sample_format="s16")
    return path


def _encode_tone(container, sound, tone_hz, seconds, sample_rate, sample_format="fltp") -> None:
    n = int(seconds * sample_rate)
    signal = (0.5 * np.sin(2 * np.pi * tone_hz * np.arange(n) / sample_rate)).astype(np.float32)
    if sample_format == "s16":
        signal = (signal * 32767).astype(np.int16)
    mux_mono_audio(container, sound, signal, sample_rate, sample_format=sample_format)
