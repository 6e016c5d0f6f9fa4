"""The synthetic audio-visual world: avcli's embedded default dataset.

A seeded generator writing real mp4 files (H.264 + AAC, through PyAV) and a label CSV. Each video shows one
object of a class moving and bouncing off the frame edges; **every bounce emits a short sound of the object's
class, starting exactly at the bounce frame's timestamp**, so audio and video are synchronised by construction.

Where the class lives, and where it deliberately does not:
- in the object's shape, its typical speed (motion), and the timbre of its bounce sound (partials, envelope,
  glide, double hit);
- not in colour: object and background colours are drawn per video/title, independently of the class;
- not in pitch: each video's sound has its own fundamental (an octave's range), whatever the class.
Motion is time-reversible by default (`motion: bounce`: constant speed, elastic bounces): a clip played backwards
is a valid clip, so the temporal method's direction and order tasks have nothing to learn from the video.
`slowdown_per_s` adds an arrow of time: the object slows between bounces and each bounce restores its speed (at
1/s it nearly stops after two or three bounces, so it mostly tells early clips from late ones). `motion: fall`
gives natural arrows of time: gravity, floor bounces that keep `restitution` of the speed, and a kick up every
`kick_period_s`; the object loses height from bounce to bounce, its bounces come faster, and each one sounds
quieter than the one before (the sound's gain follows the impact speed). Its side walls are silent. Its kicks are
alike, so nothing tells an early clip of a video from a late one; `kick_decay` < 1 makes each kick lower than the
last (a trend over the whole video, which the ordering tasks can use). `impact_dust_s` adds an arrow inside every
clip that holds an impact: each one raises a ring of dust on the floor that widens and fades.
Distractors: a per-title background texture and ambient sound shared by all videos of a title (titles group
videos like episodes of a show; `title_strength` sets how distinct they are), silent moving blobs, unrelated
sound events, random speed and start position, and a fraction of "faulty" videos whose soundtrack is unrelated
sound (another class, off-sync, another title's ambience): the faulty positives Robust-xID is about.

Layout written under `root`: `media/<video_id>.mp4`, `labels.csv` (path, class_id, class_name, title_id,
faulty, split, seconds) and `world.json` (the spec and, per video, the bounce frames).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from avcli.recipe.schema import SyntheticWorld
from avcli.media.mux_audio import mux_mono_audio

CLASS_NAMES = ["disc", "square", "triangle", "plus", "ring", "star", "half_disc", "bar"]

# Typical speed of each class relative to the video's drawn speed: part of the class's motion signature, and
# through the bounce rate, of its rhythm.
_SPEED_FACTOR = [0.8, 1.2, 0.9, 1.1, 0.85, 1.15, 0.95, 1.05]

F0_RANGE_HZ = (250.0, 500.0)  # per-video fundamental, independent of the class


@dataclass(frozen=True)
class Timbre:
    """A bounce sound: partials at `ratios`·f0 with `amps`, exponential decay, an optional glide of the pitch
    over the sound (`glide` octaves) and an optional second hit `echo_s` later."""

    ratios: tuple[float, ...]
    amps: tuple[float, ...]
    decay_s: float
    glide: float = 0.0
    echo_s: float = 0.0


TIMBRES = [
    Timbre((1, 2, 3, 4, 5, 6), (1.0, 0.5, 0.33, 0.25, 0.2, 0.17), 0.10),  # disc: sawtooth-like
    Timbre((1, 3, 5, 7), (1.0, 0.33, 0.2, 0.14), 0.10),  # square: odd harmonics
    Timbre((1,), (1.0,), 0.18),  # triangle: pure, long
    Timbre((1, 2, 3, 4, 5), (0.2, 0.4, 1.0, 0.6, 0.3), 0.08),  # plus: bright, formant-like
    Timbre((1.0, 2.76, 5.40, 8.93), (1.0, 0.6, 0.35, 0.2), 0.25),  # ring: bell (inharmonic)
    Timbre((1, 2), (1.0, 0.3), 0.12, glide=1.0),  # star: rising glide
    Timbre((1, 2), (1.0, 0.3), 0.12, glide=-1.0),  # half disc: falling glide
    Timbre((1, 2, 3), (1.0, 0.5, 0.3), 0.05, echo_s=0.06),  # bar: double hit
]


def _shape_mask(class_id: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Membership of points (x, y), in units of the object radius, for each class's shape."""
    r = np.hypot(x, y)
    if class_id == 0:
        return r <= 1.0
    if class_id == 1:
        return np.maximum(np.abs(x), np.abs(y)) <= 0.78
    if class_id == 2:
        return (y >= -0.55) & (y <= 1.0 - 1.8 * np.abs(x))
    if class_id == 3:
        return ((np.abs(x) <= 0.3) & (np.abs(y) <= 1.0)) | ((np.abs(y) <= 0.3) & (np.abs(x) <= 1.0))
    if class_id == 4:
        return (r <= 1.0) & (r >= 0.55)
    if class_id == 5:
        theta = np.arctan2(y, x)
        return r <= 0.55 + 0.45 * np.cos(5 * theta)
    if class_id == 6:
        return (r <= 1.0) & (y >= 0.0)
    if class_id == 7:
        return (np.abs(x) <= 1.0) & (np.abs(y) <= 0.32)
    raise ValueError(class_id)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def _coloured_noise(n: int, sample_rate: int, corner_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise with a one-pole low-pass spectrum above `corner_hz`."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    noise = np.fft.irfft(spectrum / np.sqrt(1 + (freqs / corner_hz) ** 2), n)
    return noise / (noise.std() + 1e-9)


class _Title:
    """What every video of one title shares: background texture and palette, ambient sound.

    `title_strength` s blends a neutral grey background and neutral noise (s = 0: every title alike) with the
    title's own palette, texture, hum and noise colour (s = 1)."""

    NEUTRAL = np.float32(0.35)

    def __init__(self, spec: SyntheticWorld, title_id: int):
        rng = np.random.default_rng([spec.seed, 1, title_id])
        self.strength = spec.title_strength
        n = spec.size
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
        texture = np.zeros((n, n), np.float32)
        for _ in range(4):  # a few oriented gratings of random frequency and phase
            angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(1.5, 7.0), rng.uniform(0, 2 * np.pi)
            texture += np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
        texture = (texture - texture.min()) / (np.ptp(texture) + 1e-6) - 0.5
        base = _hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.5))
        own = np.clip(base[None, None] * (1 + 0.8 * texture[..., None]), 0, 1)
        self.background = (1 - self.strength) * self.NEUTRAL + self.strength * own
        self.hum_hz = rng.uniform(60.0, 180.0)
        self.noise_corner_hz = rng.uniform(150.0, 2500.0)

    def ambience(self, n_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        t = np.arange(n_samples) / sample_rate
        neutral = 0.01 * _coloured_noise(n_samples, sample_rate, 1000.0, rng)
        hum = 0.02 * np.sin(2 * np.pi * self.hum_hz * t + rng.uniform(0, 2 * np.pi))
        own = hum + 0.02 * _coloured_noise(n_samples, sample_rate, self.noise_corner_hz, rng)
        return ((1 - self.strength) * neutral + self.strength * own).astype(np.float32)


def bounce_sound(class_id: int, sample_rate: int, f0: float) -> np.ndarray:
    """The class's bounce sound at fundamental `f0` (peak-normalised to 1), starting at sample 0."""
    timbre = TIMBRES[class_id]
    length = int(sample_rate * (min(0.4, 5 * timbre.decay_s) + timbre.echo_s))
    t = np.arange(length) / sample_rate
    # instantaneous pitch f0·2^(glide·t/span): integrate it for the phase
    span = 3 * timbre.decay_s
    if timbre.glide:
        rate = timbre.glide / span
        phase_base = 2 * np.pi * f0 * (np.exp2(np.minimum(t, span) * rate) - 1) / (rate * np.log(2))
        phase_base += 2 * np.pi * f0 * np.exp2(timbre.glide) * np.maximum(t - span, 0)
    else:
        phase_base = 2 * np.pi * f0 * t
    tone = sum(a * np.sin(r * phase_base) for r, a in zip(timbre.ratios, timbre.amps))
    envelope = (1 - np.exp(-t / 0.002)) * np.exp(-t / timbre.decay_s)
    if timbre.echo_s:
        late = np.maximum(t - timbre.echo_s, 0)
        envelope = envelope + 0.8 * (t >= timbre.echo_s) * (1 - np.exp(-late / 0.002)) * np.exp(-late / timbre.decay_s)
    sound = tone * envelope
    return (sound / np.abs(sound).max()).astype(np.float32)


def _noise_event(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """An unrelated sound: a band of noise with a random centre, length and decay (not any class's timbre)."""
    n = int(sample_rate * rng.uniform(0.05, 0.2))
    centre = rng.uniform(300.0, 3000.0)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    band = np.fft.irfft(spectrum * np.exp(-0.5 * ((freqs - centre) / (0.3 * centre)) ** 2), n)
    band *= np.exp(-np.arange(n) / (0.3 * n))
    return (band / (np.abs(band).max() + 1e-9)).astype(np.float32)


@dataclass
class _Mover:
    """An object bouncing inside the frame: position and velocity in pixels (per frame). With `decay` < 1 its speed
    is multiplied by `decay` every frame and set back to the initial speed at each bounce (a slowdown between
    bounces); with 1 it keeps its speed."""

    pos: np.ndarray
    vel: np.ndarray
    radius: float
    decay: float = 1.0

    def __post_init__(self):
        self.speed = float(np.linalg.norm(self.vel))  # what a bounce restores

    def step(self, size: int) -> bool:
        """Advance one frame; True when it bounced off an edge during this step."""
        bounced = self._move(size)
        if self.decay != 1.0:
            self.vel = self.vel * (self.speed / np.linalg.norm(self.vel) if bounced else self.decay)
        return bounced

    def _move(self, size: int) -> bool:
        self.pos = self.pos + self.vel
        bounced = False
        for axis in range(2):
            low, high = self.radius, size - 1 - self.radius
            if self.pos[axis] < low:
                self.pos[axis] = 2 * low - self.pos[axis]
                self.vel[axis] = -self.vel[axis]
                bounced = True
            elif self.pos[axis] > high:
                self.pos[axis] = 2 * high - self.pos[axis]
                self.vel[axis] = -self.vel[axis]
                bounced = True
        return bounced


# How bouncy each class is in the `fall` world (times `restitution`): part of its motion, and through the rhythm
# of a fall's bounces, of its sound.
_RESTITUTION_FACTOR = [1.0, 0.9, 1.06, 0.94, 1.1, 0.96, 1.03, 0.92]
FALL_SECONDS = 0.55  # a fall from the top of the frame to the floor, whatever the frame size
REST_SPEED = 0.15  # a floor impact slower than this share of a fall from the top stops the object (no sound)


@dataclass
class _Faller:
    """An object under gravity (`fall` world), in pixels and frames; y grows downwards. It glides sideways at a
    constant speed (elastic, silent side walls), bounces off the floor keeping `restitution` of its speed, and comes
    to rest when an impact is slower than REST_SPEED of a fall from the top. Every `kick_every` frames (from
    `kick_phase`) a kick sends it up to a random height, at least a fifth of the frame above where it is: so it
    visibly loses height between kicks, and its bounces come faster and weaker until the next kick."""

    pos: np.ndarray
    vel: np.ndarray
    radius: float
    gravity: float
    restitution: float
    kick_every: float
    kick_phase: float
    rng: np.random.Generator
    kick_decay: float = 1.0
    frame: int = 0
    resting: bool = False
    kicks: list = field(default_factory=list)  # the frames at which it was kicked

    def floor(self, size: int) -> float:
        return size - 1 - self.radius

    def top_speed(self, size: int) -> float:
        """The impact speed of a fall from the top of the frame: the loudest bounce."""
        return math.sqrt(2 * self.gravity * (self.floor(size) - self.radius))

    def step(self, size: int) -> float:
        """Advance one frame; the impact speed (pixels per frame) of a sounding floor bounce during it, else 0."""
        self.frame += 1
        floor, span = self.floor(size), self.floor(size) - self.radius
        if (self.frame - self.kick_phase) % self.kick_every < 1:  # a kick: up to a random height
            height = floor - self.pos[1]
            share = float(self.rng.uniform(0.6, 0.95)) * self.kick_decay ** len(self.kicks)
            apex = min(span, max(share * span, height + 0.2 * span))
            self.vel[1] = -math.sqrt(2 * self.gravity * max(apex - height, 0.0))
            self.resting = False
            self.kicks.append(self.frame)
        self.pos[0] += self.vel[0]
        if not self.pos[0] >= self.radius or not self.pos[0] <= floor:  # side walls: elastic and silent
            self.pos[0] = 2 * (self.radius if self.pos[0] < self.radius else floor) - self.pos[0]
            self.vel[0] = -self.vel[0]
        if self.resting:
            return 0.0
        # exact ballistic motion over the frame, with the floor impact (if any) inside it
        y, v, g = self.pos[1], self.vel[1], self.gravity
        y_end = y + v + g / 2
        if y_end <= floor:
            self.pos[1], self.vel[1] = max(y_end, self.radius), v + g
            return 0.0
        t_hit = (-v + math.sqrt(max(v * v + 2 * g * (floor - y), 0.0))) / g  # 0 < t_hit ≤ 1
        impact = v + g * t_hit
        if impact < REST_SPEED * self.top_speed(size):
            self.pos[1], self.vel[1], self.resting = floor, 0.0, True
            return 0.0
        up, rest = -self.restitution * impact, 1 - t_hit
        self.pos[1], self.vel[1] = min(floor + up * rest + g * rest * rest / 2, floor), up + g * rest
        return impact


def _random_faller(rng: np.random.Generator, spec: SyntheticWorld, class_id: int, size: int, radius: float,
                   speed: float) -> _Faller:
    fps = spec.fps
    gravity = 2 * (size - 1 - 2 * radius) / (FALL_SECONDS * fps) ** 2
    pos = np.array([rng.uniform(radius, size - 1 - radius), rng.uniform(radius, size - 1 - radius)])
    kick_every = rng.uniform(*spec.kick_period_s) * fps
    restitution = min(spec.restitution * _RESTITUTION_FACTOR[class_id], 0.95)
    return _Faller(pos, np.array([speed * (1 if rng.random() < 0.5 else -1), 0.0]), radius, gravity, restitution,
                   kick_every, rng.uniform(0, kick_every), rng, spec.kick_decay)


def _random_mover(rng: np.random.Generator, size: int, radius: float, speed: float, decay: float = 1.0) -> _Mover:
    pos = rng.uniform(radius, size - 1 - radius, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    return _Mover(pos, np.array([math.cos(angle), math.sin(angle)]) * speed, radius, decay)


DUST_GREY = np.float32(0.9)  # neutral: the dust says nothing about the class


def _dust_ring(image: np.ndarray, xx: np.ndarray, yy: np.ndarray, x0: float, y0: float, radius: float, age: float,
               strength: float) -> np.ndarray:
    """The dust an impact raised, `age` (0-1) of its life later: a flat ring on the floor around the impact point
    that widens from 0.4 to 2 object radii and fades out, denser for a harder impact (`strength` 0-1)."""
    wide = radius * (0.4 + 1.6 * age)
    d = np.hypot((xx - x0) / wide, (yy - y0) / (0.35 * wide))
    alpha = (0.8 * strength * (1 - age) * np.exp(-(((d - 1) / 0.2) ** 2)))[..., None]
    return image * (1 - alpha) + DUST_GREY * alpha


def _mix(audio: np.ndarray, sound: np.ndarray, onset_s: float, sample_rate: int, gain: float) -> None:
    start = int(round(onset_s * sample_rate))
    end = min(len(audio), start + len(sound))
    if end > start:
        audio[start:end] += gain * sound[: end - start]


def render_video(spec: SyntheticWorld, index: int, class_id: int, title: _Title, faulty_source: tuple | None):
    """Frames (N×H×W×3 uint8), mono audio (float32), and the bounce frames and sound fundamental (Hz)."""
    rng = np.random.default_rng([spec.seed, 2, index])
    n_frames = int(round(rng.uniform(spec.min_seconds, spec.max_seconds) * spec.fps))
    seconds = n_frames / spec.fps
    size = spec.size
    radius = size * rng.uniform(0.17, 0.21)
    speed_px_per_s = size * rng.uniform(*spec.speed) * _SPEED_FACTOR[class_id]
    # With a slowdown the object loses speed between bounces and a bounce restores it: played backwards it speeds
    # up towards the wall and is braked by it, so a clip's direction and order become visible.
    if spec.motion == "fall":
        hero = _random_faller(rng, spec, class_id, size, radius, speed_px_per_s / spec.fps)
    else:
        hero = _random_mover(rng, size, radius, speed_px_per_s / spec.fps, math.exp(-spec.slowdown_per_s / spec.fps))
    colour = _hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.7, 1.0))
    blobs = [
        (
            _random_mover(rng, size, size * 0.1, size * rng.uniform(*spec.speed) / spec.fps),
            _hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 1.0), rng.uniform(0.5, 1.0)),
        )
        for _ in range(spec.distractors)
    ]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    bounces, impacts = [], []
    dust, dust_frames = [], spec.impact_dust_s * spec.fps  # the impacts whose dust is still settling; its lifetime
    for k in range(n_frames):
        impact = float(hero.step(size)) if k > 0 else 0.0
        if impact:
            bounces.append(k)
            impacts.append(impact)
            if spec.impact_dust_s:
                dust.append((k, float(hero.pos[0]), min(1.0, impact / hero.top_speed(size))))
        image = np.broadcast_to(title.background, (size, size, 3)).copy()
        dust = [d for d in dust if k - d[0] < dust_frames]
        for start, x0, strength in dust:
            image = _dust_ring(image, xx, yy, x0, size - 1 - 0.2 * radius, radius, (k - start) / dust_frames, strength)
        for blob, blob_colour in blobs:
            if k > 0:
                blob.step(size)
            d2 = (xx - blob.pos[0]) ** 2 + (yy - blob.pos[1]) ** 2
            alpha = np.exp(-d2 / (2 * (blob.radius * 0.6) ** 2))[..., None] * 0.8
            image = image * (1 - alpha) + blob_colour * alpha
        mask = _shape_mask(class_id, (xx - hero.pos[0]) / radius, (yy - hero.pos[1]) / radius)
        image[mask] = colour
        frames[k] = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)

    n_samples = int(round(seconds * spec.sample_rate))
    f0 = math.exp(rng.uniform(math.log(F0_RANGE_HZ[0]), math.log(F0_RANGE_HZ[1])))
    if faulty_source is None:
        audio = title.ambience(n_samples, spec.sample_rate, rng)
        sound_class, onsets = class_id, [k / spec.fps for k in bounces]
    else:
        # Unrelated sound: another class's timbre at random times, over another title's ambience.
        sound_class, other_title = faulty_source
        audio = other_title.ambience(n_samples, spec.sample_rate, rng)
        rate = max(len(bounces), 2) / seconds
        onsets = list(np.sort(rng.uniform(0, seconds, size=rng.poisson(rate * seconds))))
    sound = bounce_sound(sound_class, spec.sample_rate, f0)
    if spec.motion == "fall":  # as loud as the impact is fast: each bounce of a fall quieter than the one before
        level = 0.5 * rng.uniform(0.7, 1.0)
        gains = [level * min(1.0, i / hero.top_speed(size)) for i in impacts]
        if faulty_source is not None:  # unrelated sound: the gains of this video's bounces, at random times
            gains = [gains[int(j)] for j in rng.integers(len(gains), size=len(onsets))] if gains else [level] * len(onsets)
    else:
        gains = [0.5 * rng.uniform(0.7, 1.0) for _ in onsets]
    for onset, gain in zip(onsets, gains):
        _mix(audio, sound, onset, spec.sample_rate, gain)
    for onset in rng.uniform(0, seconds, size=rng.poisson(spec.sound_distractors * seconds)):
        _mix(audio, _noise_event(spec.sample_rate, rng), onset, spec.sample_rate, 0.4 * rng.uniform(0.5, 1.0))
    events = {"bounce_frames": bounces, "f0_hz": round(f0, 3)}
    if spec.motion == "fall" and faulty_source is None:
        events["bounce_gains"] = [round(g, 4) for g in gains]
    if spec.motion == "fall":
        events["kick_frames"] = list(hero.kicks)
    return frames, np.clip(audio, -1, 1), events


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int, sample_rate: int) -> None:
    """H.264 (keyframe every second) + AAC mono; audio frames carry explicit pts so the timelines line up."""
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.codec_context.gop_size = fps
        video.options = {"qp": "0", "preset": "veryfast", "threads": "1"}  # lossless: see below
        sound = container.add_stream("aac", rate=sample_rate)
        sound.layout = "mono"
        for k, frame in enumerate(frames):
            # Same seed, same frames: libx264 was seen to encode identical input differently now and then (the
            # first GOP, about 1 run in 30 under load), so the video is lossless (qp 0): whatever the encoder
            # decides, the decoded frames are exactly these YUV planes.
            planes = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p").to_ndarray()
            yuv = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            yuv.pts = k
            for packet in video.encode(yuv):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        mux_mono_audio(container, sound, audio, sample_rate)
    tmp.replace(path)


def world_assignments(spec: SyntheticWorld) -> list[dict]:
    """Class, title, faulty flag and split of every video (cheap; no rendering)."""
    rng = np.random.default_rng([spec.seed, 0])
    titles_test = set(rng.permutation(spec.titles)[: max(1, round(spec.titles * spec.test_fraction))].tolist())
    faulty = set(rng.permutation(spec.videos)[: round(spec.videos * spec.faulty_fraction)].tolist())
    per_title = math.ceil(spec.videos / spec.titles)
    rows = []
    for i in range(spec.videos):
        title = i // per_title
        rows.append(
            {
                "video_id": f"v{i:05d}",
                "class_id": i % spec.classes,
                "title_id": title,
                "faulty": i in faulty,
                "split": "test" if title in titles_test else "train",
            }
        )
    return rows


def generate_world(spec: SyntheticWorld, root: Path, on_video=None) -> Path:
    """Write the world under `root` (media/, labels.csv, world.json); videos already written are kept."""
    root = Path(root)
    (root / "media").mkdir(parents=True, exist_ok=True)
    titles: dict[int, _Title] = {}

    def title(t: int) -> _Title:
        if t not in titles:
            titles[t] = _Title(spec, t)
        return titles[t]

    rows, videos = [], {}
    for i, row in enumerate(world_assignments(spec)):
        faulty_source = None
        if row["faulty"]:
            rng = np.random.default_rng([spec.seed, 3, i])
            other_class = (row["class_id"] + 1 + int(rng.integers(spec.classes - 1))) % spec.classes
            other_title = (row["title_id"] + 1 + int(rng.integers(max(spec.titles - 1, 1)))) % spec.titles
            faulty_source = (other_class, title(other_title))
        frames, audio, events = render_video(spec, i, row["class_id"], title(row["title_id"]), faulty_source)
        path = root / "media" / f"{row['video_id']}.mp4"
        if not path.exists():
            write_mp4(path, frames, audio, spec.fps, spec.sample_rate)
        seconds = len(frames) / spec.fps
        rows.append(
            {
                "path": f"media/{row['video_id']}.mp4",
                "class_id": row["class_id"],
                "class_name": CLASS_NAMES[row["class_id"]],
                "title_id": f"t{row['title_id']:03d}",
                "faulty": int(row["faulty"]),
                "split": row["split"],
                "seconds": f"{seconds:.4f}",
            }
        )
        videos[row["video_id"]] = {**events, "frames": len(frames)}
        if on_video is not None:
            on_video(i)
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "world.json").write_text(json.dumps({"spec": spec.model_dump(), "videos": videos}, indent=1))
    return root
