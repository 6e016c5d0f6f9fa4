"""The corruption suite of the fingerprint evaluation: content-preserving edits of a clip, written as new files.

A clip is decoded whole into memory (`Clip`: uint8 frames T×H×W×3 at a constant frame rate and mono audio),
edited with torch / torchaudio / PIL, and encoded again with PyAV (H.264 + AAC). Each corruption is a function
`(clip, generator) → (clip, encode options)`; the random ones (crop position, speed, text position, pitch
direction) draw from the generator, so a seed fixes the whole suite. `expected_offset_s` is where the
corrupted query starts in its reference (the trim's length; 0 otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import torch
import torchaudio.functional as AF
import torchvision.transforms.v2.functional as TF

from avcli.media.clip_reader import ClipReader
from avcli.media.mux_audio import mux_mono_audio

TRIM_S = 1.0
SUITE_VERSION = 1  # bump when an edit changes, so that query files cached by `fingerprint eval` are rewritten


@dataclass
class Clip:
    frames: torch.Tensor  # uint8 T×H×W×3
    fps: float
    audio: torch.Tensor  # float32 mono samples
    rate: int

    @property
    def seconds(self) -> float:
        return self.frames.shape[0] / self.fps


@dataclass(frozen=True)
class Encoding:
    video_bitrate: int | None = None  # None: near-lossless quality (crf 18)
    audio_bitrate: int = 128_000
    audio_rate: int | None = None  # None: the clip's rate


def read_clip(path: str | Path, start: float, seconds: float, fps: float, rate: int,
              short_side: int | None = None) -> Clip:
    """`seconds` of `path` from `start`, resampled to a constant `fps` and mono `rate` (ClipReader's timeline)."""
    with ClipReader(path) as reader:
        frames = reader.read_video(start, max(1, int(round(seconds * fps))), fps, short_side)
        audio = reader.read_audio(start, seconds, rate)
    return Clip(frames, fps, audio, rate)


def write_clip(clip: Clip, path: str | Path, encoding: Encoding = Encoding()) -> Path:
    """H.264 (yuv420p, even size) + AAC mono mp4."""
    frames = clip.frames[:, : clip.frames.shape[1] // 2 * 2, : clip.frames.shape[2] // 2 * 2]
    fps = max(1, int(round(clip.fps)))
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.height, video.width = frames.shape[1], frames.shape[2]
        video.pix_fmt = "yuv420p"
        if encoding.video_bitrate:
            video.bit_rate = encoding.video_bitrate
            video.options = {"preset": "veryfast"}
        else:
            video.options = {"crf": "18", "preset": "veryfast"}
        rate = encoding.audio_rate or clip.rate
        audio = clip.audio if rate == clip.rate else AF.resample(clip.audio, clip.rate, rate)
        sound = out.add_stream("aac", rate=rate)
        sound.layout = "mono"
        sound.bit_rate = encoding.audio_bitrate
        for image in frames.numpy():
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        samples = audio.clamp(-1, 1).numpy().astype(np.float32)
        mux_mono_audio(out, sound, samples, rate)
    return Path(path)


# ------------------------------------------------------------------------------------------ the edits


def _map_frames(clip: Clip, fn) -> Clip:
    x = clip.frames.permute(0, 3, 1, 2)  # T×3×H×W uint8
    return replace(clip, frames=fn(x).permute(0, 2, 3, 1).contiguous())


def _float_op(fn):
    def apply(x):
        y = fn(x.float() / 255)
        return (y.clamp(0, 1) * 255).round().to(torch.uint8)
    return apply


def low_bitrate(clip, gen):
    return clip, Encoding(video_bitrate=max(60_000, clip.frames.shape[1] * clip.frames.shape[2] // 4),
                          audio_bitrate=32_000)


def resize(clip, gen):
    h, w = clip.frames.shape[1:3]
    return _map_frames(clip, lambda x: TF.resize(x, [max(2, h // 2), max(2, w // 2)], antialias=True)), Encoding()


def crop(clip, gen):
    """A 75 % × 75 % box at a random position, kept at that size (the picture is cut, not rescaled)."""
    h, w = clip.frames.shape[1:3]
    ch, cw = int(h * 0.75), int(w * 0.75)
    top = int(torch.randint(0, h - ch + 1, (), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (), generator=gen))
    return replace(clip, frames=clip.frames[:, top : top + ch, left : left + cw].contiguous()), Encoding()


def hflip(clip, gen):
    return replace(clip, frames=clip.frames.flip(2).contiguous()), Encoding()


def blur(clip, gen):
    sigma = max(1.5, min(clip.frames.shape[1:3]) / 120)
    kernel = int(2 * math.ceil(3 * sigma) + 1)
    return _map_frames(clip, _float_op(lambda x: TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma]))), Encoding()


def noise(clip, gen):
    return _map_frames(clip, _float_op(lambda x: x + 0.08 * torch.randn(x.shape, generator=gen))), Encoding()


def brightness_contrast(clip, gen):
    return _map_frames(clip, _float_op(lambda x: TF.adjust_contrast(TF.adjust_brightness(x, 1.3), 0.7))), Encoding()


def frame_rate(clip, gen):
    """Down to 10 fps: the frame on screen at each new instant."""
    new_fps = 10.0
    count = max(1, int(clip.seconds * new_fps))
    picks = torch.clamp((torch.arange(count) * clip.fps / new_fps).floor().long(), max=clip.frames.shape[0] - 1)
    return replace(clip, frames=clip.frames[picks], fps=new_fps), Encoding()


def speed(clip, gen):
    """Played 0.8–1.25× as fast (log-uniform): frames re-timed, sound resampled (its pitch moves with it)."""
    factor = math.exp(math.log(0.8) + float(torch.rand((), generator=gen)) * (math.log(1.25) - math.log(0.8)))
    count = max(1, int(clip.frames.shape[0] / factor))
    picks = torch.clamp((torch.arange(count) * factor).floor().long(), max=clip.frames.shape[0] - 1)
    new_rate = int(round(clip.rate / factor))
    audio = AF.resample(clip.audio, clip.rate, new_rate)  # same samples played at `rate`: factor× faster
    return replace(clip, frames=clip.frames[picks], audio=audio), Encoding()


def overlay_text(clip, gen):
    from PIL import Image, ImageDraw, ImageFont

    h, w = clip.frames.shape[1:3]
    font = ImageFont.load_default(size=max(10, h // 8))
    top = int(torch.randint(0, max(1, h - h // 6), (), generator=gen))
    out = []
    for image in clip.frames.numpy():
        picture = Image.fromarray(image)
        ImageDraw.Draw(picture).text((w // 20, top), "avcli COPY 2025", font=font, fill=(255, 255, 255),
                                     stroke_width=2, stroke_fill=(0, 0, 0))
        out.append(torch.from_numpy(np.array(picture)))
    return replace(clip, frames=torch.stack(out)), Encoding()


def audio_noise(clip, gen):
    """White noise at 10 dB SNR (at a fixed low level on a silent track)."""
    power = float(clip.audio.pow(2).mean())
    std = math.sqrt(power / 10) if power > 1e-8 else 0.01
    return replace(clip, audio=clip.audio + std * torch.randn(clip.audio.shape, generator=gen)), Encoding()


def audio_low_bitrate(clip, gen):
    return clip, Encoding(audio_bitrate=16_000, audio_rate=16_000)


def audio_pitch(clip, gen):
    steps = 2 if float(torch.rand((), generator=gen)) < 0.5 else -2
    shifted = AF.pitch_shift(clip.audio.unsqueeze(0), clip.rate, steps).squeeze(0)
    return replace(clip, audio=shifted[: clip.audio.shape[0]].contiguous()), Encoding()


def trim(clip, gen):
    """The first TRIM_S seconds cut off (the query then starts TRIM_S into its reference)."""
    first_frame = int(round(TRIM_S * clip.fps))
    first_sample = int(round(TRIM_S * clip.rate))
    return replace(clip, frames=clip.frames[first_frame:], audio=clip.audio[first_sample:]), Encoding()


CORRUPTIONS = {
    "low_bitrate": low_bitrate,
    "resize": resize,
    "crop": crop,
    "hflip": hflip,
    "blur": blur,
    "noise": noise,
    "brightness_contrast": brightness_contrast,
    "frame_rate": frame_rate,
    "speed": speed,
    "overlay_text": overlay_text,
    "audio_noise": audio_noise,
    "audio_low_bitrate": audio_low_bitrate,
    "audio_pitch": audio_pitch,
    "trim": trim,
}


def expected_offset_s(name: str) -> float:
    return TRIM_S if name == "trim" else 0.0


def corrupt_file(reference: Clip, name: str, out: Path, seed: int) -> Path:
    gen = torch.Generator().manual_seed(seed)
    clip, encoding = CORRUPTIONS[name](reference, gen)
    return write_clip(clip, out, encoding)
