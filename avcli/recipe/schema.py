"""The recipe: everything a pretraining run needs, as data (DESIGN.md → Recipes).

Every model forbids unknown keys, so a misspelt key is an error with its dotted path, never a silent default.
Relative paths are resolved against the working directory when the recipe is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------- data


class SyntheticWorld(Strict):
    """The built-in synthetic audio-visual world (avcli.media.synthetic); see its module docstring."""

    videos: int = Field(240, ge=4, description="number of videos to generate")
    classes: int = Field(8, ge=2, le=8, description="object classes (shape, speed and sound timbre)")
    titles: int = Field(24, ge=1, description="titles: groups of videos sharing background texture and ambience")
    title_strength: float = Field(
        0.5, ge=0, le=1, description="how distinct titles look and sound (0: all alike, 1: strong palette and ambience)"
    )
    faulty_fraction: float = Field(0.1, ge=0, le=1, description="videos whose audio is unrelated sound")
    distractors: int = Field(1, ge=0, le=4, description="silent moving blobs per video (not the sounding object)")
    sound_distractors: float = Field(0.25, ge=0, description="unrelated sound events per second (not the object)")
    speed: tuple[float, float] = Field((0.5, 0.6), description="object speed range, frame widths per second")
    seed: int = 0
    size: int = Field(64, ge=32, description="frame width and height in pixels")
    fps: int = Field(16, ge=4)
    sample_rate: int = Field(16000, ge=8000)
    min_seconds: float = Field(6.0, gt=0)
    max_seconds: float = Field(10.0, gt=0)
    test_fraction: float = Field(0.25, gt=0, lt=1, description="fraction of titles held out for the probe test split")

    @model_validator(mode="after")
    def _ranges(self):
        if self.max_seconds < self.min_seconds:
            raise ValueError("max_seconds must be >= min_seconds")
        if not 0 < self.speed[0] <= self.speed[1]:
            raise ValueError("speed must be (min, max) with 0 < min <= max")
        return self


class Clip(Strict):
    """What one training sample holds: a short video clip and the audio window around it (METHODS.md §0)."""

    frames: int = Field(8, ge=1, description="video frames per clip")
    fps: float = Field(16.0, gt=0, description="frame rate the clip is sampled at")
    size: int = Field(112, ge=16, description="square crop fed to the video encoder, pixels")
    resize: Optional[int] = Field(None, description="short side before cropping; default size·8/7 (128 for 112)")
    audio_seconds: float = Field(2.0, gt=0, description="audio window length in seconds")
    sample_rate: int = Field(24000, ge=4000, description="audio rate in Hz (mono)")
    max_offsync_s: float = Field(0.0, ge=0, description="random audio/video offset at train time (AVID: 0.5)")

    @property
    def resize_to(self) -> int:
        return self.resize if self.resize is not None else round(self.size * 8 / 7)


class AudioFeatures(Strict):
    """Audio input representation; computed with torchaudio, normalised per frequency with stored statistics."""

    kind: Literal["log_mel", "avid_spectrogram"] = Field(
        "log_mel",
        description="log_mel: mel bands in dB; avid_spectrogram: AVID's 1024-point linear log-power STFT → 257 bins",
    )
    n_mels: int = Field(40, ge=8, description="mel bands (log_mel only)")
    hop_seconds: float = Field(0.01, gt=0, description="frame hop (10 ms in AVID and AVTS)")
    window_seconds: float = Field(0.025, gt=0, description="analysis window (log_mel only)")
    top_db: float = Field(100.0, gt=0, description="dynamic range kept below the clip's peak")


class Augment(Strict):
    """Train-time augmentation (METHODS.md §0); evaluation uses resize + centre crop only."""

    crop_scale: tuple[float, float] = Field((0.08, 1.0), description="RandomResizedCrop area range")
    flip: bool = True
    color_jitter: tuple[float, float, float, float] = Field(
        (0.4, 0.4, 0.4, 0.2), description="brightness, contrast, saturation, hue (clip-consistent)"
    )
    volume: float = Field(0.1, ge=0, lt=1, description="audio gain drawn from U(1−volume, 1+volume)")


class Data(Strict):
    catalog: Path = Field(description="catalog directory written by `avcli ingest`")
    synthetic: Optional[SyntheticWorld] = Field(
        None, description="if set and the catalog does not exist yet, generate the synthetic world there first"
    )
    clip: Clip = Clip()
    audio: AudioFeatures = AudioFeatures()
    augment: Augment = Augment()
    clips_per_item: int = Field(1, ge=1, description="clips drawn from each catalog item per epoch")


# --------------------------------------------------------------------------------------------- model


class Encoder(Strict):
    name: str = Field(description="registered encoder name (avcli.models.registry)")
    width: Optional[int] = Field(None, ge=4, description="base channel width; default the architecture's own")


class Projector(Strict):
    """MLP head per modality: feature → hidden → out, ReLU between, L2-normalised output."""

    hidden_dim: int = Field(512, ge=1)
    out_dim: int = Field(128, ge=1)
    batch_norm: bool = Field(False, description="BatchNorm after the hidden layer (not in AVID; helps tiny towers)")


class Model(Strict):
    video: Encoder = Encoder(name="r2plus1d_18")
    audio: Encoder = Encoder(name="conv2d_10")
    projector: Projector = Projector()


# --------------------------------------------------------------------------------------------- method


class XID(Strict):
    """Cross-modal instance discrimination (METHODS.md §1), in-batch symmetric InfoNCE."""

    kind: Literal["xid"] = "xid"
    temperature: float = Field(0.07, gt=0, description="τ: softmax temperature of the InfoNCE logits")


Method = XID  # becomes a `kind:` discriminated union as the other seed methods land


# --------------------------------------------------------------------------------------------- optimisation


class Optimizer(Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(2e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-5, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW only")


class Schedule(Strict):
    name: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 to the peak learning rate")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of the peak")


class Training(Strict):
    epochs: Optional[int] = Field(None, ge=1, description="length in passes over the catalog (or set steps)")
    steps: Optional[int] = Field(None, ge=1, description="length in optimiser steps (or set epochs)")
    batch_size: int = Field(32, ge=2, description="clips per step (per process)")
    workers: int = Field(2, ge=0, description="data-loader worker processes")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$", description="auto picks CUDA when present")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    seed: int = 0
    log_every: int = Field(10, ge=1, description="steps between metrics.jsonl lines")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (one is always written at the end)")
    keep_last_n: int = Field(3, ge=1, description="checkpoints kept on disk")

    @model_validator(mode="after")
    def _length(self):
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("set exactly one of training.epochs and training.steps")
        return self


class Output(Strict):
    run_dir: Path = Field(description="where recipe.yaml, metrics.jsonl and checkpoints/ are written")


class Recipe(Strict):
    data: Data
    model: Model = Model()
    method: Method = XID()
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule()
    training: Training
    output: Output
