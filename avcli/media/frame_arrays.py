"""Decoded frames → numpy arrays: a clip's I420 planes as they are, or one frame as RGB at a short side.

Training copies travel from the data workers as their YUV planes (the training device converts them,
`yuv420_to_rgb`), so the worker only copies bytes; everything else is converted to RGB here with FFmpeg's scaler.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from avcli.media.streams import rotation_turns


def is_plain_i420(frame: av.VideoFrame, short_side: int | None) -> bool:
    """Whether `frame` can travel as its own planes: upright even-sized yuv420p at `short_side` (if given)."""
    width, height = frame.width, frame.height
    return (frame.format.name == "yuv420p" and not width % 2 and not height % 2 and not rotation_turns(frame.rotation)
            and (short_side is None or min(width, height) == short_side))


def i420_clip(frames: list[av.VideoFrame], picks: list[int], cache: dict[int, np.ndarray]) -> np.ndarray:
    """The planes of `frames` (all `is_plain_i420`, one size; row k is decoded frame `picks[k]`) copied straight
    into one T×(H·3/2)×W I420 array (Y, then U, then V, each chroma plane H/2×W/2), no colour conversion.

    Writing each plane into its place in the clip's array is about three times cheaper than PyAV's to_ndarray (an
    hstack of three copies) followed by a stack of the frames. `cache` maps a decoded frame to the row it was
    copied to, so a frame shown at several instants (a window past the end, overlapping windows) is copied once."""
    width, height = frames[0].width, frames[0].height
    clip = np.empty((len(frames), height * 3 // 2, width), np.uint8)
    rows = clip.reshape(len(frames), -1)
    # (offset, rows, columns) of the Y, U and V planes in one frame's I420 layout
    layout = ((0, height, width), (height * width, height // 2, width // 2),
              (height * width * 5 // 4, height // 2, width // 2))
    for k, (frame, p) in enumerate(zip(frames, picks)):
        if p in cache:
            clip[k] = cache[p]
            continue
        for plane, (offset, h, w) in zip(frame.planes, layout):
            source = np.frombuffer(plane, np.uint8)  # rows of `line_size` bytes, of which the first `w` are pixels
            rows[k, offset : offset + h * w].reshape(h, w)[:] = source[: h * plane.line_size].reshape(h, -1)[:, :w]
        cache[p] = clip[k]
    return clip


def rgb_frame(frame: av.VideoFrame, short_side: int | None, reformatter: VideoReformatter) -> np.ndarray:
    """uint8 H×W×3, resized so the short side is `short_side` (aspect kept), rotated upright per the display
    matrix. `reformatter` is kept by the caller between frames (a new scaler costs about 1 ms)."""
    width, height = frame.width, frame.height
    if short_side is not None:
        scale = short_side / min(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    image = reformatter.reformat(frame, width=width, height=height, format="rgb24").to_ndarray()
    turns = rotation_turns(frame.rotation)
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image
