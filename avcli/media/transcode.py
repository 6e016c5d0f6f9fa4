"""The training copy `avcli ingest` writes for each source file, plus shot and silence detection on the way.

Pretraining reads thousands of short random clips per minute, so the copy is laid out for random access:

- Matroska holding H.264 (libx264, yuv420p, no B-frames) with a keyframe at least every `keyframe_interval_s`:
  a seek lands on a keyframe at most that far before the clip, which bounds the frames decoded per clip.
- Small frames (short side `short_side`, default 128) at a constant `fps`: decode cost scales with pixels,
  and a constant rate makes "frame k" and "time k/fps" the same thing. Frame k shows the latest source frame
  at or before k/fps, so variable-frame-rate sources become constant-rate ones. Frames are rotated upright.
- FLAC mono audio at `audio_rate` on the same timeline as the video (time 0 = the first video frame of the
  source): lossless, in 100 ms blocks that start on whole milliseconds (Matroska's time unit), so timing is
  sample-exact, and blocks that small seek and decode cheaply.
- The same samples again as a WAV beside the copy (`audio_sidecar`, media/pcm_sidecar.py): an audio window is
  then one read by sample offset instead of a seek and twenty FLAC packets.

Matroska stores timestamps in milliseconds. Frame times are rounded down (frame k at floor(1000·k/fps) ms), so
a reader asking for "the latest frame at or before k/fps" gets frame k, never k-1.

The file is written under `<dest>.partial` and renamed when complete: `dest` exists only if it is whole.
A source whose video fails to decode part way keeps everything up to the last good frame (flag
`partial_decode`, `decode_error_at_s`); one where no frame decodes gets `error` and no file.

Zero-size packets are skipped, not decoded: Ogg Theora (and other muxers) write them for repeated frames,
FFmpeg's own command-line tool skips them, and handing one to the decoder fails with EINVAL — which would
look like a broken file where there is none.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from avcli.media.pcm_sidecar import PcmWriter, sidecar_path
from avcli.media.shots import ShotDetector, colour_histogram
from avcli.media.streams import rotation_turns

_MKV_TIME_BASE = Fraction(1, 1000)
_SILENCE_PEAK = 1e-4  # peak |amplitude| (full scale 1.0) below which a track counts as digital silence
_AUDIO_GAP_S = 0.02  # a jump in audio timestamps larger than this is filled with silence
_HIST_DOWNSAMPLE = 4  # histograms are taken on a view this many times smaller than the output frame
# Downscaling 8x and more: "area" averages every source pixel (no aliasing), and is faster than swscale's
# default bilinear at 1080p (1.1 vs 1.7 ms a frame); "fast_bilinear" is faster still but aliases.
_SCALING = "AREA"
# Every copy is limited-range BT.601 YUV, converted explicitly and tagged so: full-range sources (yuvj420p from
# MJPEG and many phones) would otherwise keep their values under a limited-range label and lose their blacks
# and whites, and a BT.709 (HD) matrix would be read back as BT.601 by readers that go by the default.
_YUV = {"dst_colorspace": "ITU601", "dst_color_range": "MPEG"}


@dataclass
class TranscodeOptions:
    short_side: int = 128  # output short side in px (aspect kept, both dims even, never upscaled)
    fps: float = 16.0  # constant output frame rate
    keyframe_interval_s: float = 0.5  # a keyframe at least this often
    audio_rate: int = 24000  # mono
    audio_sidecar: bool = True  # also write the samples as a WAV beside the copy (media/pcm_sidecar.py)
    shot_threshold: float = 0.4  # half-L1 histogram distance above which a frame starts a new shot
    min_shot_s: float = 1.0  # boundaries closer than this to the previous one are ignored
    crf: int = 23
    preset: str = "veryfast"


@dataclass
class TranscodeResult:
    duration_s: float  # of what was written (video timeline, starts at 0)
    fps: float
    width: int
    height: int
    audio_rate: int | None  # None when there is no audio track
    audio_sidecar: Path | None = None  # the WAV beside the copy, when one was written
    shots: list[float] = field(default_factory=list)  # boundary times on the output timeline (excluding 0)
    flags: list[str] = field(default_factory=list)  # "silent_audio", "partial_decode", "audio_decode_errors"
    decode_error_at_s: float | None = None  # source time (from the video start) where video decoding failed
    error: str | None = None  # nothing usable was written: a one-line reason


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) before rotation: short side min(short_side, source's), aspect kept, both even."""
    scale = min(short_side, min(width, height)) / min(width, height)

    def even(x: float) -> int:
        return max(2, 2 * int(round(x / 2)))

    return even(width * scale), even(height * scale)


def transcode(
    src: str | Path,
    dest: str | Path,
    *,
    video_stream: int,
    audio_stream: int | None,
    rotation: int,
    start_s: float,
    options: TranscodeOptions,
) -> TranscodeResult:
    dest = Path(dest)
    temp = dest.with_name(dest.name + ".partial")
    sidecar = sidecar_path(dest)
    sidecar_temp = sidecar.with_name(sidecar.name + ".partial")
    for stale in (temp, sidecar_temp, sidecar):  # left by a killed run, or by an older copy of this item
        stale.unlink(missing_ok=True)
    empty = TranscodeResult(0.0, options.fps, 0, 0, None)
    try:
        source = av.open(str(src), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        dest.unlink(missing_ok=True)
        empty.error = f"cannot open ({exc.strerror if isinstance(exc, av.error.FFmpegError) else exc})"
        return empty
    try:
        with source:
            job = _Transcode(source, temp, video_stream, audio_stream, rotation, start_s, options,
                             sidecar_temp if options.audio_sidecar else None)
            try:
                result = job.run()
            finally:
                job.close()
        if result.error:
            temp.unlink(missing_ok=True)
            sidecar_temp.unlink(missing_ok=True)
            dest.unlink(missing_ok=True)
        else:
            if sidecar_temp.exists():  # renamed first: a copy that exists has its sidecar
                os.replace(sidecar_temp, sidecar)
                result.audio_sidecar = sidecar
            os.replace(temp, dest)
        return result
    except BaseException:
        temp.unlink(missing_ok=True)
        sidecar_temp.unlink(missing_ok=True)
        raise


class _Transcode:
    """One pass over the source: demux video and audio together, decode, resample in time, encode."""

    def __init__(self, source, temp: Path, video_index: int, audio_index: int | None, rotation: int,
                 start_s: float, options: TranscodeOptions, sidecar_temp: Path | None = None):
        self.source, self.temp, self.options, self.start_s = source, temp, options, start_s
        self.sidecar_temp = sidecar_temp
        self.sidecar: PcmWriter | None = None
        self.video = source.streams[video_index]
        self.video.thread_type = "AUTO"  # frame + slice threads: ingest decodes whole files front to back
        self.audio = source.streams[audio_index] if audio_index is not None else None
        self.turns = rotation_turns(rotation)
        self.fps = options.fps
        rate = self.video.average_rate or self.video.guessed_rate
        self.source_step = 1.0 / float(rate) if rate else 1.0 / 25.0  # frame duration when a frame lacks one
        self.shots = ShotDetector(options.fps, options.shot_threshold, options.min_shot_s)
        self.flags: list[str] = []
        self.output = None  # opened on the first frame, once the size is known
        # video state
        self.pending = None  # (source frame, time): the latest source frame, not yet superseded
        self.pending_ready = None  # (encoder-ready frame, histogram) for `pending`, converted on first use
        self.last_time: float | None = None
        self.last_step = self.source_step
        self.next_k = 0  # next output frame index
        # audio state
        self.rate = options.audio_rate
        self.resampler = None
        self.resampler_key = None
        self.fed_until: float | None = None  # output-timeline sample position reached by the resampler's input
        self.chunks: list[np.ndarray] = []  # resampled float32 samples not yet encoded, from `buffer_start`
        self.buffer_start = 0
        self.written = 0  # samples encoded so far
        self.peak = 0.0
        self.audio_errors = 0

    # ------------------------------------------------------------------------------------------ main loop

    def run(self) -> TranscodeResult:
        streams = [self.video] + ([self.audio] if self.audio is not None else [])
        error_at: float | None = None
        first_packet_s: float | None = None
        try:
            for packet in self.source.demux(streams):
                if packet.size == 0:
                    continue  # empty: a repeated frame or the demuxer's end marker (see the module docstring)
                if packet.stream is self.video:
                    if first_packet_s is None and packet.pts is not None:
                        first_packet_s = float(packet.pts * packet.time_base) - self.start_s
                    try:
                        frames = self.video.decode(packet)
                    except av.error.FFmpegError:
                        error_at = self._packet_time(packet)
                        break
                    for frame in frames:
                        self._on_video(frame)
                else:
                    self._decode_audio(packet)
        except av.error.FFmpegError:  # the demuxer itself gave up: a corrupt container
            error_at = math.inf  # → right after the last good frame, below
        # drain the decoders: frame threads hold a few frames back, also after an error
        try:
            for frame in self.video.decode(None):
                self._on_video(frame)
        except av.error.FFmpegError:
            pass
        if error_at is None and self.audio is not None:
            self._decode_audio(None)

        if self.pending is None:
            where = max(first_packet_s or 0.0, 0.0)
            return TranscodeResult(0.0, self.fps, 0, 0, None, error=f"undecodable at {where:.1f} s")
        end_s = self.last_time + self.last_step
        if error_at is not None:
            # Frame threads report an error a few packets late, so the failing packet's time overshoots:
            # decoding failed at the first frame that did not come out, right after the last good one.
            error_at = min(error_at, end_s)
            self.flags.append("partial_decode")
        while self.next_k / self.fps + 1e-6 < end_s or self.next_k == 0:
            self._emit()
        duration_s = self.next_k / self.fps
        audio_rate = None
        if self.audio is not None:
            audio_rate = self.rate
            self._flush_audio_resampler()
            self._write_audio(until=round(duration_s * self.rate), final=True)
            if self.peak < _SILENCE_PEAK:
                self.flags.append("silent_audio")
            if self.audio_errors:
                self.flags.append("audio_decode_errors")
        self._close_output()
        width, height = (self.out_h, self.out_w) if self.turns % 2 else (self.out_w, self.out_h)
        return TranscodeResult(
            duration_s=duration_s, fps=self.fps, width=width, height=height, audio_rate=audio_rate,
            shots=self.shots.boundaries, flags=self.flags, decode_error_at_s=error_at,
        )

    def _packet_time(self, packet) -> float:
        if packet.pts is not None:
            return float(packet.pts * packet.time_base) - self.start_s
        return (self.last_time + self.last_step) if self.last_time is not None else 0.0

    # ------------------------------------------------------------------------------------------ video

    def _on_video(self, frame) -> None:
        # the stream's time base: frames drained with decode(None) come back without their own
        if frame.pts is not None:
            t = float(frame.pts * self.video.time_base) - self.start_s
        elif self.last_time is not None:
            t = self.last_time + self.last_step  # the decoder lost the timestamp (end of some Ogg streams)
        else:
            t = 0.0
        if self.last_time is not None and t <= self.last_time + 1e-9:
            return  # non-monotonic timestamps: keep the stream's forward order
        if self.pending is None:
            self._open_output(frame)
        else:
            # every output instant before this frame shows the pending one (the latest at or before it)
            while self.next_k / self.fps + 1e-6 < t:
                self._emit()
        if frame.duration:
            self.last_step = float(frame.duration * self.video.time_base)
        elif self.last_time is not None:
            self.last_step = min(t - self.last_time, 4 * self.source_step)
        self.pending, self.pending_ready, self.last_time = frame, None, t
        self._write_audio(until=math.floor(self.next_k / self.fps * self.rate))

    def _emit(self) -> None:
        """Encode output frame `next_k` showing the pending source frame."""
        if self.pending_ready is None:
            self.pending_ready = self._convert(self.pending)
        image, hist = self.pending_ready
        image.pts = self.next_k
        image.time_base = self.codec_time_base
        for packet in self.video_out.encode(image):
            self._mux_video(packet)
        self.shots.push(hist)
        self.next_k += 1

    def _convert(self, frame):
        """Source frame → (yuv420p frame at the output size, upright; colour histogram of a tiny view)."""
        w, h = self.out_w, self.out_h
        if self.turns == 0:
            small = self.scaler.reformat(frame, width=w, height=h, format="yuv420p", interpolation=_SCALING, **_YUV)
            tiny = self.tiny_scaler.reformat(
                small, width=max(2, w // _HIST_DOWNSAMPLE), height=max(2, h // _HIST_DOWNSAMPLE), format="rgb24"
            ).to_ndarray()
            return small, colour_histogram(tiny)
        # rotate the small picture, not the big one
        rgb = self.scaler.reformat(frame, width=w, height=h, format="rgb24", interpolation=_SCALING).to_ndarray()
        upright = np.ascontiguousarray(np.rot90(rgb, k=self.turns))
        small = self.tiny_scaler.reformat(av.VideoFrame.from_ndarray(upright, format="rgb24"), format="yuv420p", **_YUV)
        return small, colour_histogram(upright[::_HIST_DOWNSAMPLE, ::_HIST_DOWNSAMPLE])

    def _open_output(self, frame) -> None:
        self.out_w, self.out_h = output_size(frame.width, frame.height, self.options.short_side)
        self.scaler, self.tiny_scaler = VideoReformatter(), VideoReformatter()
        self.output = av.open(str(self.temp), "w", format="matroska")
        rate = Fraction(self.fps).limit_denominator(1001)
        self.codec_time_base = 1 / rate
        stream = self.output.add_stream("libx264", rate=rate)
        stream.width, stream.height = (self.out_h, self.out_w) if self.turns % 2 else (self.out_w, self.out_h)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.color_range = 1  # AVCOL_RANGE_MPEG (limited), as _YUV converts to
        stream.codec_context.colorspace = 6  # AVCOL_SPC_SMPTE170M (BT.601)
        stream.codec_context.time_base = self.codec_time_base
        gop = max(1, round(self.fps * self.options.keyframe_interval_s))
        stream.codec_context.gop_size = gop
        stream.options = {
            "preset": self.options.preset,
            "crf": str(self.options.crf),
            # keyint caps the distance between IDR frames (scene cuts may add more); no B-frames keeps
            # decode order = display order, so a reader never waits for future frames
            "x264-params": f"keyint={gop}:min-keyint=1:bframes=0:open-gop=0",
            # frames of 128 px have a handful of macroblock rows: encoder threads buy nothing measurable,
            # and ingest already runs one worker process per core
            "threads": "1",
        }
        self.video_out = stream
        if self.audio is not None:
            sound = self.output.add_stream("flac", rate=self.rate)
            sound.layout = "mono"
            sound.format = "s16"
            if self.rate % 10 == 0:
                # 100 ms blocks: every packet starts on a whole millisecond, so Matroska's ms timestamps are
                # exact sample positions at any common rate (FLAC's default 4608 at 44.1 kHz would not be)
                sound.options = {"frame_size": str(self.rate // 10)}
            self.audio_out = sound
            if self.sidecar_temp is not None:
                self.sidecar = PcmWriter(self.sidecar_temp, self.rate)

    def _mux_video(self, packet) -> None:
        # codec time (frame index) → whole milliseconds, rounded down (see the module docstring)
        tb = packet.time_base
        pts_ms = math.floor(packet.pts * tb * 1000)
        dts_ms = math.floor(packet.dts * tb * 1000) if packet.dts is not None else pts_ms
        packet.duration = math.floor((packet.pts + 1) * tb * 1000) - pts_ms
        packet.pts, packet.dts, packet.time_base = pts_ms, dts_ms, _MKV_TIME_BASE
        self.output.mux(packet)

    # ------------------------------------------------------------------------------------------ audio

    def _decode_audio(self, packet) -> None:
        try:
            frames = self.audio.decode(packet)
        except av.error.FFmpegError:
            self.audio_errors += 1  # a bad audio packet: its span becomes silence (gap filling below)
            return
        for frame in frames:
            self._on_audio(frame)

    def _on_audio(self, frame) -> None:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if frame.pts is not None:
            expected = (float(frame.pts * self.audio.time_base) - self.start_s) * self.rate
        else:
            expected = self.fed_until if self.fed_until is not None else 0.0
        if self.fed_until is None:
            self.fed_until = self.buffer_start = round(expected)
        elif expected - self.fed_until > _AUDIO_GAP_S * self.rate:
            self._flush_audio_resampler()  # a hole in the audio: silence until this frame
            gap = round(expected - self.fed_until)
            self._append(np.zeros(gap, np.float32))
            self.fed_until += gap
        if key != self.resampler_key:
            self._flush_audio_resampler()
            self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=self.rate)
            self.resampler_key = key
        self.fed_until += frame.samples * self.rate / frame.sample_rate
        frame.pts = None  # the resampler must not re-time or pad: placement is ours
        for out in self.resampler.resample(frame):
            self._append(out.to_ndarray()[0])

    def _flush_audio_resampler(self) -> None:
        if self.resampler is not None:
            for out in self.resampler.resample(None):
                self._append(out.to_ndarray()[0])
            self.resampler, self.resampler_key = None, None

    def _append(self, samples: np.ndarray) -> None:
        self.chunks.append(np.asarray(samples, np.float32))

    def _write_audio(self, until: int, final: bool = False) -> None:
        """Encode the timeline samples [written, until): resampled audio where there is some, silence elsewhere."""
        if self.audio is None or self.output is None or until <= self.written:
            return
        buffered = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        # timeline index of buffered[0] is buffer_start; samples before `written` (e.g. before time 0) are dropped
        lo = self.written - self.buffer_start
        if lo < 0:  # the audio starts later than the video: silence first
            buffered = np.concatenate([np.zeros(-lo, np.float32), buffered])
            lo = 0
        available = buffered[lo:]
        if len(available) < until - self.written and not final:
            until = self.written + len(available)
            if until <= self.written:
                self.chunks, self.buffer_start = [available], self.written
                return
        out = available[: until - self.written]
        rest = available[until - self.written :]
        if len(out) < until - self.written:  # final: the audio ended before the video, pad
            out = np.concatenate([out, np.zeros(until - self.written - len(out), np.float32)])
        if len(out):
            self.peak = max(self.peak, float(np.abs(out).max()))
        pcm = np.clip(np.round(out * 32767.0), -32768, 32767).astype(np.int16)
        chunk = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        chunk.sample_rate, chunk.pts, chunk.time_base = self.rate, self.written, Fraction(1, self.rate)
        for packet in self.audio_out.encode(chunk):
            self.output.mux(packet)
        if self.sidecar is not None:
            self.sidecar.write(pcm)
        self.written = until
        self.chunks, self.buffer_start = [rest], until

    # ------------------------------------------------------------------------------------------ finish

    def _close_output(self) -> None:
        for packet in self.video_out.encode(None):
            self._mux_video(packet)
        if self.audio is not None:
            for packet in self.audio_out.encode(None):
                self.output.mux(packet)
        self.output.close()
        self.output = None
        if self.sidecar is not None:
            self.sidecar.close()
            self.sidecar = None

    def close(self) -> None:
        """Release the output after an exception (the caller then removes the temporary files)."""
        if self.sidecar is not None:
            try:
                self.sidecar.close()
            except OSError:
                pass
            self.sidecar = None
        if self.output is not None:
            try:
                self.output.close()
            except av.error.FFmpegError:
                pass
            self.output = None
