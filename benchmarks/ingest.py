"""Ingest throughput: `transcode` (the training copy) against a plain decode of the same file.

Generates one 1080p and one 360p H.264 + AAC video with moving content and noise (so the decoder has real
work; generation is not timed), then measures for each
  (a) the floor: a PyAV decode of every video and audio frame, with the same threading as transcode, and
  (b) transcode(...) with default TranscodeOptions,
and prints one JSON line. The target is transcode ≤ 3× the plain decode (`target_ratio_max`).

    python benchmarks/ingest.py [--seconds 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from avcli.media.probe import probe_media
from avcli.media.transcode import TranscodeOptions, transcode

INPUTS = {"1080p": (1920, 1080, 25), "360p": (640, 360, 30)}


def make_video(path: Path, width: int, height: int, fps: int, seconds: float, seed: int = 0) -> Path:
    """Moving gradient + a moving square + per-frame noise; a tone with noise for the audio (AAC stereo 48 kHz)."""
    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 24, (height, width, 3), dtype=np.uint8) for _ in range(8)]
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([(xs * 255 // width), (ys * 255 // height), ((xs + ys) * 127 // (width + height))], -1)
    base = base.astype(np.uint8)
    frames = int(seconds * fps)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "20"}
        audio = container.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        side = height // 4
        for k in range(frames):
            image = np.roll(base, 4 * k, axis=1) + noise[k % len(noise)]
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


def plain_decode(path: Path) -> float:
    start = time.perf_counter()
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        video.thread_type = "AUTO"  # as in transcode
        for packet in container.demux(video, audio):
            if packet.size:
                packet.decode()
        video.decode(None), audio.decode(None)
    return time.perf_counter() - start


def timed_transcode(path: Path, dest: Path) -> float:
    info = probe_media(path)
    start = time.perf_counter()
    result = transcode(
        path, dest, video_stream=info.video_stream, audio_stream=info.audio_stream, rotation=info.rotation,
        start_s=info.start_s, options=TranscodeOptions(),
    )
    wall = time.perf_counter() - start
    if result.error or result.flags:
        raise RuntimeError(f"unexpected transcode result for {path}: {result}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each generated video")
    parser.add_argument("--quick", action="store_true", help="4 s videos, one repeat (a smoke run)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings")
    args = parser.parse_args()
    seconds = 4.0 if args.quick else args.seconds
    repeats = 1 if args.quick else args.repeats
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (width, height, fps) in INPUTS.items():
            src = make_video(Path(tmp) / f"{name}.mp4", width, height, fps, seconds)
            media_s = probe_media(src).duration_s
            plain_decode(src)  # warm the page cache and the libraries
            decode_wall = min(plain_decode(src) for _ in range(repeats))
            transcode_wall = min(timed_transcode(src, Path(tmp) / f"{name}.mkv") for _ in range(repeats))
            report[name] = {
                "media_s": round(media_s, 3),
                "decode_wall_s": round(decode_wall, 3),
                "transcode_wall_s": round(transcode_wall, 3),
                "media_s_per_wall_s_per_worker": round(media_s / transcode_wall, 2),
                "ratio_to_decode": round(transcode_wall / decode_wall, 2),
            }
    print(json.dumps({"benchmark": "ingest", "inputs": report, "target_ratio_max": 3.0}))


if __name__ == "__main__":
    main()
