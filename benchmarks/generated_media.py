"""Test inputs for the benchmarks: H.264 + AAC videos with moving content and noise (real work for decoders)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def make_video(
    path: Path, width: int, height: int, fps: int, seconds: float, seed: int = 0, gop_s: float | None = None,
    noise: int = 24, crf: int = 20,
) -> Path:
    """Moving gradient + a moving square + per-frame noise; a tone with noise for the audio (AAC stereo 48 kHz).

    `gop_s`: keyframe interval (None: x264's default of 250 frames, typical of downloaded videos); `noise`: peak
    per-pixel noise (0-255), which sets how hard the content is to encode and decode."""
    rng = np.random.default_rng(seed)
    grain = [rng.integers(0, max(noise, 1), (height, width, 3), dtype=np.uint8) for _ in range(8)]
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([(xs * 255 // width), (ys * 255 // height), ((xs + ys) * 127 // (width + height))], -1)
    base = base.astype(np.uint8)
    frames = int(seconds * fps)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": str(crf)}
        if gop_s is not None:
            video.codec_context.gop_size = max(1, round(gop_s * fps))
        audio = container.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        side = height // 4
        for k in range(frames):
            image = np.roll(base, 4 * k, axis=1) + grain[k % len(grain)]
            x = (k * 13) % (width - side)
            image[side : 2 * side, x : x + side] = (255, 64, 32) if (k // fps) % 2 else (32, 200, 255)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        n = int(seconds * 48000)
        t = np.arange(n) / 48000
        signal = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
        for start in range(0, n, 1024):
            chunk = np.stack([signal[start : start + 1024]] * 2)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return path
