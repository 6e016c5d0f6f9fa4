"""Probe a media file once with PyAV: streams, durations, rotation, and whether it decodes at all.

`probe_media` never raises for a bad file: it returns a MediaInfo whose `reject_reason` says, in a few words,
why the file cannot be used (ingest turns that into a catalog row with status `rejected`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av

from avcli.media.streams import default_audio_stream, default_video_stream


# Demuxers FFmpeg falls back to for files that are not audio-visual media: text shown as ANSI art ("tty"),
# subtitle files, and single still images.
_NOT_MEDIA_FORMATS = {"tty", "srt", "ass", "webvtt", "lrc", "microdvd", "subviewer", "sami", "jacosub", "mpl2"}
_STILL_IMAGE_SUFFIX = "_pipe"  # jpeg_pipe, png_pipe, webp_pipe, ...


@dataclass
class MediaInfo:
    path: str
    size_bytes: int = 0
    mtime: float = 0.0
    container: str | None = None
    start_s: float = 0.0  # timestamp of the first video frame: time 0 of every clip timeline
    duration_s: float | None = None  # length of the video stream from start_s
    video_stream: int | None = None
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    rotation: int = 0  # degrees, as stored in the display matrix; frames are rotated back when read
    audio_stream: int | None = None
    audio_codec: str | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None
    reject_reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reject_reason is None

    def to_dict(self) -> dict:
        return asdict(self)


def _seconds(value, time_base) -> float | None:
    return float(value * time_base) if value is not None and time_base is not None else None


def _stream_end(container, stream) -> float | None:
    """End time of a stream from its metadata, or by demuxing packets (no decoding) when the header lacks it."""
    start = _seconds(stream.start_time, stream.time_base) or 0.0
    if stream.duration:
        return start + _seconds(stream.duration, stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag and ":" in tag:  # Matroska writes "HH:MM:SS.nnnnnnnnn" per track
        h, m, s = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    end = None
    container.seek(0)
    for packet in container.demux(stream):
        if packet.pts is not None:
            packet_end = float((packet.pts + (packet.duration or 0)) * stream.time_base)
            end = packet_end if end is None else max(end, packet_end)
    container.seek(0)
    return end


def probe_media(path: str | os.PathLike, allow_no_audio: bool = False, min_seconds: float = 0.0) -> MediaInfo:
    path = Path(path)
    info = MediaInfo(path=str(path))
    try:
        stat = path.stat()
    except OSError as exc:
        info.reject_reason = f"cannot stat ({exc.strerror})"
        return info
    info.size_bytes, info.mtime = stat.st_size, stat.st_mtime
    if stat.st_size == 0:
        info.reject_reason = "zero-length file"
        return info
    if not os.access(path, os.R_OK):
        info.reject_reason = "permission denied"
        return info
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.PermissionError:
        info.reject_reason = "permission denied"
        return info
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError):
        info.reject_reason = "not a media file"
        return info
    with container:
        info.container = container.format.name
        if info.container in _NOT_MEDIA_FORMATS:
            info.reject_reason = "not a media file"
            return info
        if info.container.endswith(_STILL_IMAGE_SUFFIX) or info.container == "image2":
            info.reject_reason = "a still image, not a video"
            return info
        video = default_video_stream(container)
        audio = default_audio_stream(container)
        if video is None:
            info.reject_reason = "no video stream"
            return info
        info.video_stream, info.video_codec = video.index, video.codec_context.name
        info.width, info.height = video.codec_context.width, video.codec_context.height
        rate = video.average_rate or video.guessed_rate or video.base_rate
        info.fps = float(rate) if rate else None
        if audio is not None:
            info.audio_stream, info.audio_codec = audio.index, audio.codec_context.name
            info.audio_rate, info.audio_channels = audio.codec_context.sample_rate, audio.codec_context.channels
        try:
            first = next(container.decode(video))
            info.rotation = int(first.rotation or 0)
            if not info.width:
                info.width, info.height = first.width, first.height
        except (av.error.FFmpegError, StopIteration):
            info.reject_reason = "undecodable video stream at position 0"
            return info
        info.start_s = _seconds(video.start_time, video.time_base) or 0.0
        try:
            end = _stream_end(container, video)
        except av.error.FFmpegError:
            end = None
        if not end and container.duration:
            end = info.start_s + container.duration / 1e6
        info.duration_s = end - info.start_s if end else None
    if info.duration_s is None:
        info.reject_reason = "duration unknown (the container and streams carry no timing)"
    elif audio is None and not allow_no_audio:
        info.reject_reason = "no audio stream"
    elif info.duration_s < min_seconds:
        info.reject_reason = f"shorter than one clip ({info.duration_s:.2f} s < {min_seconds:.2f} s)"
    elif audio is None:
        info.notes.append("no audio stream")
    return info
