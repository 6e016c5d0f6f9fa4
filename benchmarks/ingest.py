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

from avcli.media.probe import probe_media

from generated_media import make_video
from avcli.media.transcode import TranscodeOptions, transcode

INPUTS = {"1080p": (1920, 1080, 25), "360p": (640, 360, 30)}


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
