"""Read clips from a media file: video frames and the audio window on one timeline.

Time 0 of the timeline is the first frame of the video stream (`MediaInfo.start_s` in container time), so the
same `t` addresses the picture and the sound at that moment whatever the container's start offsets are.

- `read_video(t, frames, fps, short_side)`: the frames displayed at t, t + 1/fps, ... (the latest source frame
  at or before each instant), resized so the short side is `short_side` (aspect kept), rotated upright per the
  display matrix; uint8 T×H×W×3. Instants past the end repeat the last frame.
- `read_audio(t, seconds, sample_rate)`: float32 mono samples of [t, t + seconds), resampled with torchaudio,
  zero-padded where the file has no sound (before its start, after its end, or no audio stream).
- `duration_s`: the length of the timeline (the video stream's, or the audio stream's in a sound file).

A file without a video stream (a sound recording) opens with `audio_only=True`; its timeline starts at the first
audio sample, and `read_video` fails.

Seeking does not trust keyframe flags: when a seek lands after the wanted instant, it retries further back.
Training copies (`exact_durations`) are read with one decoder thread, decoding stops at the last frame a window
shows, and windows with frame skipping or several windows of one item are decoded sparsely
(media/sparse_decode.py). Decoded frames become arrays in media/frame_arrays.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
import torch
import torchaudio.functional as AF

from avcli.errors import AvcliError
from avcli.media.frame_arrays import i420_clip, is_plain_i420, rgb_frame
from avcli.media.pcm_sidecar import PcmSidecar
from avcli.media.sparse_decode import PICK_TOLERANCE_S, decode_sparse
from avcli.media.streams import default_audio_stream, default_video_stream


# Opening a file probes its streams by decoding a little of each; by default that probe starts a decoder thread
# pool (one thread per core) for every stream, which costs more than the probe itself: a third of the time to
# open a training copy with one thread. Decoding later uses the stream's own codec context, which these options
# do not touch.
_PROBE_OPTIONS = {"threads": "1"}
_NO_PREROLL_CODECS = {"flac", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "alac"}
_INT_SCALE = {"s16": 32768.0, "s16p": 32768.0, "s32": 2147483648.0, "s32p": 2147483648.0}


def _mono_float(frame: av.AudioFrame) -> np.ndarray | None:
    """A mono frame's samples as float32 without a resampler (the training copies' FLAC is mono s16), or None."""
    if frame.layout.nb_channels != 1:
        return None
    name = frame.format.name
    if name in ("flt", "fltp"):
        return frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
    if name in _INT_SCALE:
        return frame.to_ndarray().reshape(-1).astype(np.float32) / _INT_SCALE[name]
    return None


class ClipReadError(AvcliError):
    """A clip could not be decoded at all (the file is broken at that position)."""


class ClipReader:
    def __init__(
        self, path: str | Path, video_stream: int | None = None, audio_stream: int | None = None,
        audio_only: bool = False, audio_sidecar: str | Path | None = None, exact_durations: bool = False,
    ):
        self.path = str(path)
        # Frame durations are exact in avcli's own training copies (each is the gap to the next frame's
        # timestamp), so decoding can stop at the frame on screen at the end of a window instead of decoding
        # one more to find out; in other files durations can lie, and the next frame decides.
        self.exact_durations = exact_durations
        self.pcm: PcmSidecar | None = None
        try:
            self.container = av.open(self.path, metadata_errors="ignore", options=_PROBE_OPTIONS)
        except av.error.FFmpegError as exc:
            raise ClipReadError(f"{self.path}: cannot open ({exc})") from None
        streams = self.container.streams
        self.video = streams[video_stream] if video_stream is not None else default_video_stream(self.container)
        self.audio = streams[audio_stream] if audio_stream is not None else default_audio_stream(self.container)
        if audio_only:
            self.video = None  # a sound file's cover art is not a video stream
            if self.audio is None:
                raise ClipReadError(f"{self.path}: no audio stream")
        elif self.video is None:
            raise ClipReadError(f"{self.path}: no video stream")
        else:
            self._set_threads()
        if audio_sidecar is not None and self.audio is not None:
            try:  # the same samples as the audio stream, read by offset (media/pcm_sidecar.py)
                self.pcm = PcmSidecar(audio_sidecar)
            except (OSError, ValueError):
                self.pcm = None  # missing or damaged: decode the stream, which holds the same samples
        self.reformatter = VideoReformatter()  # keeps its scaler between frames (a new one costs ~1 ms)
        if self.video is not None:
            self.video_tb = float(self.video.time_base)  # a float: Fraction arithmetic per frame adds up
            rate = self.video.average_rate or self.video.guaranteed_rate
            self.frame_s = 1.0 / float(rate) if rate else 0.0  # a frame's duration (constant in the copies)
        timeline = self.video if self.video is not None else self.audio
        tb = timeline.time_base
        self.origin_s = float(timeline.start_time * tb) if timeline.start_time is not None else 0.0

    @property
    def duration_s(self) -> float:
        """Length of the timeline: the stream's duration, else the container's (0.0 when neither is known)."""
        stream = self.video if self.video is not None else self.audio
        if stream.duration:
            return float(stream.duration * stream.time_base)
        return self.container.duration / 1e6 if self.container.duration else 0.0

    # ------------------------------------------------------------------------------------------ video

    def read_video(self, t: float, frames: int, fps: float, short_side: int | None = None) -> torch.Tensor:
        return self.read_video_windows([(t, frames, 1.0 / fps)], short_side)[0]

    def read_video_windows(
        self, windows: list[tuple[float, int, float]], short_side: int | None = None, max_gap_s: float = 1.0,
        yuv: bool = False,
    ) -> list[torch.Tensor]:
        """Several clips, each `(start, frames, interval_s)`: frames at start + k·interval (k < frames), uint8
        T×H×W×3. Windows less than `max_gap_s` apart share one seek and one decode pass (clips of one item in
        a hierarchical batch, ordering pairs, speed-ups), instead of a seek and a keyframe's worth of decoding
        each.

        `yuv=True` returns the decoded planes as they are, T×(H·3/2)×W uint8 (I420: Y, then U, then V, each
        chroma plane H/2×W/2), for conversion on the training device (`yuv420_to_rgb`); only for upright
        yuv420p streams with even sides read at their own size (training copies), else ClipReadError."""
        if self.video is None:
            raise ClipReadError(f"{self.path}: no video stream (opened as a sound file)")
        order = sorted(range(len(windows)), key=lambda i: windows[i][0])
        out: list[torch.Tensor | None] = [None] * len(windows)
        group: list[int] = []
        group_end = -math.inf
        for i in order + [None]:
            if i is not None:
                start, frames, step = windows[i]
                if not group or start - group_end <= max_gap_s:
                    group.append(i)
                    group_end = max(group_end, start + (frames - 1) * step)
                    continue
            self._read_group([windows[j] for j in group], group, out, short_side, yuv)
            if i is not None:
                group, group_end = [i], windows[i][0] + (windows[i][1] - 1) * windows[i][2]
        return out  # type: ignore[return-value]

    def _read_group(self, windows, slots, out, short_side, yuv=False) -> None:
        wanted = [np.array([s + k * step for k in range(n)]) for s, n, step in windows]
        first, last = min(w[0] for w in wanted), max(w[-1] for w in wanted)
        # Sparse reading pays for its read-ahead only when frames between the instants can go undecoded (frame
        # skipping, or clips apart): a clip of consecutive frames at the copy's own rate decodes densely.
        sparse = self.exact_durations and (len(windows) > 1 or windows[0][2] > 1.5 * self.frame_s)
        decoded = self._decode_video(first, last, np.unique(np.concatenate(wanted)) if sparse else None)
        if not decoded:
            raise ClipReadError(f"{self.path}: no video frame decodes at {first:.2f} s")
        times = np.array([time for time, _ in decoded])
        cache: dict[int, np.ndarray] = {}
        for slot, instants in zip(slots, wanted):
            # the frame on screen at each instant: the last one starting at or before it (tolerance: half a µs)
            picks = np.clip(np.searchsorted(times, instants + PICK_TOLERANCE_S, side="right") - 1, 0,
                            len(decoded) - 1).tolist()
            if yuv:
                frames = [decoded[p][1] for p in picks]
                if any(not is_plain_i420(f, short_side) or (f.width, f.height) != (frames[0].width, frames[0].height)
                       for f in frames):
                    raise ClipReadError(
                        f"{self.path}: frames are not upright even-sized yuv420p at short side {short_side}")
                out[slot] = torch.from_numpy(i420_clip(frames, picks, cache))
                continue
            for p in picks:
                if p not in cache:
                    cache[p] = rgb_frame(decoded[p][1], short_side, self.reformatter)
            out[slot] = torch.from_numpy(np.stack([cache[p] for p in picks]))

    def _decode_video(
        self, first: float, last: float, instants: np.ndarray | None = None
    ) -> list[tuple[float, av.VideoFrame]]:
        """Frames covering [first, last]: from the frame on screen at `first` to the one on screen at `last`.

        Given the sorted `instants` that will be picked (a training copy, `_read_group` decides), the read is
        sparse: only the frames on screen at those instants come back, and of the frames between them only those a
        kept frame depends on are decoded (media/sparse_decode.py)."""
        sparse = instants is not None
        for backoff in (0.0, 1.0, 4.0, 16.0, math.inf):
            from_start = first - backoff <= 0
            self._seek(first - backoff)
            frames = decode_sparse(self.container, self.video, self.origin_s, instants) if sparse else None
            if frames is None:
                if sparse:  # the stream is not laid out as the copies are: decode densely from the same point
                    sparse = False
                    self._seek(first - backoff)
                frames = self._frames_from_here(first, last)
            # A seek can land after the wanted instant, or on a non-keyframe that decodes to nothing, when
            # keyframe flags or index entries lie: then look further back.
            if from_start or (frames and frames[0][0] <= first + 1e-3):
                return frames
        return frames

    def _seek(self, t: float) -> None:
        """To the keyframe at or before timeline time `t` (the start of the file for t ≤ 0), decoder flushed."""
        if t <= 0:
            # The very start of the file: a seek to the first pts can land past its keyframe when decode order
            # differs from display order (MPEG-TS).
            self.container.seek(0)
        else:
            self.container.seek(int((self.origin_s + t) / self.video.time_base), stream=self.video, backward=True)
        self.video.codec_context.flush_buffers()

    def _frames_from_here(self, first: float, last: float) -> list[tuple[float, av.VideoFrame]]:
        """Decode forward, keeping the last frame at or before `first` and every frame up to just past `last`."""
        tb = self.video_tb
        stop_on_duration = self.exact_durations
        frames: list[tuple[float, av.VideoFrame]] = []
        try:
            for frame in self._decode(self.video):
                if frame.pts is None:
                    continue
                time = frame.pts * tb - self.origin_s
                if frames and time <= frames[-1][0]:
                    continue  # non-monotonic timestamps: keep the stream's forward order
                if frames and frames[-1][0] <= first and time <= first:
                    frames[-1] = (time, frame)  # still before the window: keep only the latest
                else:
                    frames.append((time, frame))
                end = time + frame.duration * tb if stop_on_duration and frame.duration else -math.inf
                if time > last or end > last + PICK_TOLERANCE_S:
                    break
        except av.error.FFmpegError:
            pass  # a broken tail: use what decoded
        return frames

    def _decode(self, stream):
        """Frames of `stream` from the current position to the end of the file.

        Empty packets are skipped, not decoded: Ogg Theora writes them for repeated frames and FFmpeg's decoder
        rejects them (EINVAL), which would end the read early as if the file were broken there."""
        for packet in self.container.demux(stream):
            if packet.size:
                yield from packet.decode()
        yield from stream.decode(None)  # the frames the decoder still holds at the end of the file

    # ------------------------------------------------------------------------------------------ audio

    def read_audio(self, t: float, seconds: float, sample_rate: int) -> torch.Tensor:
        n_out = int(round(seconds * sample_rate))
        if self.audio is None:
            return torch.zeros(n_out)
        native = self.pcm.sample_rate if self.pcm is not None else (self.audio.codec_context.sample_rate or sample_rate)
        margin = 64  # native samples either side, so the resampling filter sees real context at the edges
        start = math.floor((t * native)) - margin
        stop = math.ceil((t + seconds) * native) + margin
        signal = self.pcm.read(start, stop) if self.pcm is not None else self._decode_audio(start, stop, native)
        resampled = torch.from_numpy(signal)
        if native != sample_rate:
            resampled = AF.resample(resampled, native, sample_rate)
        offset = int(round((t - start / native) * sample_rate))
        clip = resampled[offset : offset + n_out]
        if clip.shape[0] < n_out:
            clip = torch.nn.functional.pad(clip, (0, n_out - clip.shape[0]))
        return clip.contiguous()

    def _decode_audio(self, start: int, stop: int, native: int) -> np.ndarray:
        """Mono float32 samples [start, stop) at the native rate (sample 0 = video time 0), zeros where absent."""
        out = np.zeros(stop - start, np.float32)
        tb = self.audio.time_base
        downmix = None  # made on the first frame that is not already mono
        # Seek a little before the window: the first frames a decoder produces after a seek lack the overlap
        # of the frames before them (MDCT codecs such as AAC), so they are decoded and dropped, never used.
        # Lossless codecs (the FLAC of training copies) have no such overlap.
        preroll_s = 0.0 if self.audio.codec_context.name in _NO_PREROLL_CODECS else 0.1
        target = self.origin_s + start / native - preroll_s
        try:
            self.container.seek(max(0, int(target / tb)), stream=self.audio, backward=True)
            self.audio.codec_context.flush_buffers()  # forget the previous read: a read depends only on its window
        except av.error.FFmpegError:
            # FFmpeg refuses to seek in some tiny sound files (a FLAC of a single frame: EPERM); reading from
            # the start of a freshly opened file gives the same samples.
            self._reopen()
            tb = self.audio.time_base
        try:
            for frame in self._decode(self.audio):
                if frame.pts is None:
                    continue
                first = int(round((float(frame.pts * tb) - self.origin_s) * native))
                if first >= stop:
                    break
                samples = _mono_float(frame)
                if samples is None:
                    frame.pts = None  # the downmix must not re-time or pad the frame
                    downmix = downmix or av.AudioResampler(format="fltp", layout="mono", rate=native)
                    samples = np.concatenate([f.to_ndarray()[0] for f in downmix.resample(frame)])
                lo, hi = max(first, start), min(first + len(samples), stop)
                if hi > lo:
                    out[lo - start : hi - start] = samples[lo - first : hi - first]
        except av.error.FFmpegError:
            pass  # a broken tail: keep the samples that decoded
        return out

    # ------------------------------------------------------------------------------------------ lifetime

    def _set_threads(self) -> None:
        """Slice threads, never frame threads (those add latency per seek and fight data-loader workers). A
        training copy is small and written as one slice per frame, so slice threads have nothing to share and
        only cost their start: one thread there (opening a copy and reading its first clip took about 5 instead
        of 9-15 ms)."""
        self.video.thread_type = "SLICE"
        if self.exact_durations:
            self.video.codec_context.thread_count = 1


    def _reopen(self) -> None:
        video_index = self.video.index if self.video is not None else None
        audio_index = self.audio.index if self.audio is not None else None
        self.container.close()
        self.container = av.open(self.path, metadata_errors="ignore", options=_PROBE_OPTIONS)
        self.video = self.container.streams[video_index] if video_index is not None else None
        self.audio = self.container.streams[audio_index] if audio_index is not None else None
        if self.video is not None:
            self._set_threads()
            self.video_tb = float(self.video.time_base)

    def close(self) -> None:
        self.container.close()
        if self.pcm is not None:
            self.pcm.close()

    def __enter__(self) -> "ClipReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
