"""Which video and audio stream of a container to use (the one FFmpeg's own selection would pick), and how to
turn its frames upright."""

from __future__ import annotations

import av


def _is_cover_art(stream) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except AttributeError:  # older PyAV without Disposition
        return False


def default_video_stream(container):
    """Highest-resolution real video stream (not cover art), as FFmpeg chooses; None if there is none."""
    candidates = [s for s in container.streams.video if not _is_cover_art(s)]
    if not candidates:
        return None
    return max(candidates, key=lambda s: ((s.codec_context.width or 0) * (s.codec_context.height or 0), -s.index))


def default_audio_stream(container):
    """The audio stream with the most channels (first on ties), as FFmpeg chooses; None if there is none."""
    candidates = list(container.streams.audio)
    if not candidates:
        return None
    return max(candidates, key=lambda s: (s.codec_context.channels or 0, -s.index))


def rotation_turns(rotation: int | float | None) -> int:
    """Counter-clockwise quarter turns (np.rot90's k) that bring a frame with this display rotation upright."""
    return round((rotation or 0) / 90) % 4
