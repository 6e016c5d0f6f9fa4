"""Decode only the frames a set of instants needs, from a training copy (ClipReader's sparse path).

In a training copy (media/transcode.py: H.264 without B-frames, so decode order is display order and each packet
is one frame; exact timestamps) frame k is needed only by the frames after it up to the next keyframe. So
packets are read ahead without decoding: a keyframe drops the undecoded packets before it, and a packet is
decoded, with the pending ones it depends on, only once the next packet's timestamp shows that it is on screen
at a wanted instant. Clips of one item that are seconds apart, and clips at 2×–8× speed (every 2nd–8th frame),
then cost their own frames plus the decoding from their keyframe, instead of every frame in between.

A stream that turns out not to be laid out like that (timestamps out of order, a frame that does not come out of
its packet) gives None, and the caller decodes densely instead.
"""

from __future__ import annotations

import av
import numpy as np

PICK_TOLERANCE_S = 5e-7  # a frame starting this much after an instant still counts as on screen (ClipReader)


def decode_sparse(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, origin_s: float,
    instants: np.ndarray,
) -> list[tuple[float, av.VideoFrame]] | None:
    """From the current position (just after a seek), the frames on screen at the sorted `instants` (timeline
    seconds: stream time minus `origin_s`), each once, with their times; None if the stream is not laid out as
    the copies are. The first frame read also stands for instants before it (ClipReader's backoff then seeks
    further back)."""
    tb, eps = float(stream.time_base), PICK_TOLERANCE_S
    n = len(instants)
    frames: list[tuple[float, av.VideoFrame]] = []
    pending: list[av.Packet] = []  # packets since the last keyframe or decoded packet, not decoded yet
    previous: tuple[float, av.Packet] | None = None  # the last packet read; its screen time is not known yet
    j = 0  # the first instant not yet covered by a kept frame

    def keep(time: float, packet: av.Packet) -> bool:
        """Decode the pending packets, ending with `packet`, and keep its frame; False if it does not come out."""
        if pending[0].is_keyframe:
            stream.codec_context.flush_buffers()  # packets were skipped: start clean at the keyframe
        out = None
        for queued in pending:
            for frame in queued.decode():
                if frame.pts == packet.pts:
                    out = frame
        pending.clear()
        if out is None:
            return False
        frames.append((time, out))
        return True

    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue  # an empty packet repeats the previous frame (Ogg Theora); FFmpeg's decoder rejects it
            if packet.pts is None:
                return None
            time = packet.pts * tb - origin_s
            if previous is not None:
                if time <= previous[0]:
                    return None  # out-of-order timestamps: B-frames, or a damaged index
                # `previous` is on screen over [its time, this time): needed if an instant falls there (or before
                # it, for the first frame read)
                if j < n and instants[j] < time - eps:
                    while j < n and instants[j] < time - eps:
                        j += 1
                    if not keep(*previous):
                        return None
                if j == n:
                    return frames
            if packet.is_keyframe:
                pending.clear()  # the frames before a keyframe are never needed by the ones after it
            pending.append(packet)
            previous = (time, packet)
    except av.error.FFmpegError:
        return frames  # a broken tail: use what decoded
    if previous is not None and j < n and not keep(*previous):  # the last frame of the file
        return None
    return frames
