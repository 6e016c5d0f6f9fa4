"""The recipe: everything a pretraining run needs, as data (DESIGN.md → Recipes).

Every model forbids unknown keys, so a misspelt key is an error with its dotted path, never a silent default.
Relative paths are resolved against the working directory when the recipe is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
    slowdown_per_s: float = Field(
        0.0,
        ge=0,
        description="rate (1/s) at which the object's speed decays between bounces, each bounce restoring it: an "
        "arrow of time for the temporal method's direction and order tasks (0: constant speed, elastic bounces, "
        "motion that looks the same played backwards)",
    )
    motion: Literal["bounce", "fall"] = Field(
        "bounce",
        description="`bounce`: the object glides at constant speed and bounces elastically off the four edges "
        "(motion that looks the same played backwards); `fall`: gravity, the object bounces off the floor with "
        "`restitution` and is kicked up again every `kick_period_s`, so it visibly loses height between kicks and "
        "each bounce of a fall sounds quieter than the one before (natural arrows of time, for the temporal method)",
    )
    restitution: float = Field(
        0.7, gt=0, lt=1, description="`fall`: the share of its speed the object keeps at a floor bounce (before the "
        "class's own factor: some classes are bouncier than others)"
    )
    kick_period_s: tuple[float, float] = Field(
        (1.5, 2.5), description="`fall`: range of the time between two kicks (drawn per video)"
    )
    kick_decay: float = Field(
        1.0, gt=0, le=1, description="`fall`: each kick sends the object up to this share of the previous kick's "
        "height (the kicker tires: a trend over the whole video, which tells an early clip from a late one; 1: every "
        "kick alike, so two clips of a video cannot be ordered)"
    )
    impact_dust_s: float = Field(
        0.0, ge=0, description="`fall`: each sounding floor impact raises a ring of dust on the floor that spreads "
        "and fades over this many seconds, denser for a harder impact (an arrow of time inside every clip that holds "
        "an impact: played backwards the ring shrinks and thickens; 0: no dust)"
    )
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
        if not 0 < self.kick_period_s[0] <= self.kick_period_s[1]:
            raise ValueError("kick_period_s must be (min, max) with 0 < min <= max")
        if self.motion == "fall" and self.slowdown_per_s:
            raise ValueError("slowdown_per_s applies to motion: bounce only; the fall world's arrow of time is "
                             "its restitution")
        if self.motion != "fall" and self.impact_dust_s:
            raise ValueError("impact_dust_s applies to motion: fall only (the bounce world's walls raise no dust)")
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
    offsync: Literal["centred", "avid"] = Field(
        "centred", description="how the offset is drawn (uniform sampler): centred: the shorter span at the longer "
        "one's centre ± U(−max_offsync_s, +max_offsync_s); avid: the video start uniform over the audio window "
        "widened by max_offsync_s on both sides (AVID-CMA datasets/video_db.py _sample_snippet: a 2.5 s range "
        "for 2 s of audio, 0.5 s of video and 0.5 s)")

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
    stats_clips: int = Field(
        1000, ge=1, description="audio windows the per-frequency normalisation statistics are fitted on when "
        "training starts, spread over the catalog (AVID normalises with dataset-wide statistics, AVID-CMA "
        "datasets/assets/audio-spectDB-*-norm-stats.npz); saved with every checkpoint")


class Augment(Strict):
    """Train-time augmentation (METHODS.md §0); evaluation uses resize + centre crop only.

    Every random choice is clip-consistent (one crop, flip and jitter for all frames of a clip) and drawn from the
    sample's own generator (avcli.data.video_transforms, avcli.data.audio_transforms). SpecAugment symbols
    (Park et al. 2019): m_F = freq_masks, F = freq_mask_width, m_T = time_masks, T = time_mask_width.
    """

    crop_scale: tuple[float, float] = Field(
        (0.08, 1.0), description="RandomResizedCrop area range (lo, hi), 0 < lo <= hi <= 1; aspect in (3/4, 4/3)"
    )
    flip: bool = Field(True, description="random horizontal flip with probability 0.5")
    color_jitter: tuple[float, float, float, float] = Field(
        (0.4, 0.4, 0.4, 0.2),
        description="brightness, contrast, saturation (factor from U(1-s, 1+s)) and hue (shift from U(-h, h), "
        "h <= 0.5); 0 turns one off (clip-consistent)",
    )
    grayscale_prob: float = Field(0.0, ge=0, le=1, description="probability of converting a clip to grayscale")
    on_device: bool = Field(
        False,
        description="draw the video parameters in the data workers but crop, resize and jitter the collated batch "
        "on the training device (GPU) instead of in the workers",
    )
    volume: float = Field(0.1, ge=0, lt=1, description="audio gain drawn from U(1−volume, 1+volume)")
    speed_perturb: Optional[tuple[float, float]] = Field(
        None,
        description="audio speed (tempo and pitch) factor range (lo, hi) applied by resampling the waveform, "
        "then cropped/padded to the window; None: off",
    )
    freq_masks: int = Field(0, ge=0, description="m_F: SpecAugment frequency masks per spectrogram (0: off)")
    freq_mask_width: int = Field(8, ge=0, description="F: widest frequency mask, in bins (width ~ U{0..F})")
    time_masks: int = Field(0, ge=0, description="m_T: SpecAugment time masks per spectrogram (0: off)")
    time_mask_width: int = Field(20, ge=0, description="T: widest time mask, in frames (width ~ U{0..T})")

    # field validators (not one model validator) so that every bad field is reported at once
    @field_validator("crop_scale")
    @classmethod
    def _crop_scale(cls, v):
        if not 0 < v[0] <= v[1] <= 1:
            raise ValueError("crop_scale must be (lo, hi) with 0 < lo <= hi <= 1")
        return v

    @field_validator("color_jitter")
    @classmethod
    def _color_jitter(cls, v):
        if min(v) < 0 or v[3] > 0.5:
            raise ValueError("color_jitter strengths must be >= 0, and hue <= 0.5")
        return v

    @field_validator("speed_perturb")
    @classmethod
    def _speed_perturb(cls, v):
        if v is not None and not 0 < v[0] <= v[1]:
            raise ValueError("speed_perturb must be (lo, hi) with 0 < lo <= hi")
        return v


class UniformSampling(Strict):
    """Every item `clips_per_item` times per epoch in random order, one random window each (xID, Robust-xID)."""

    kind: Literal["uniform"] = "uniform"


class HierarchicalSampling(Strict):
    """Kalayeh et al. (METHODS.md §5): batches of T titles × C time-disjoint clips (T = batch_size / C)."""

    kind: Literal["hierarchical"] = "hierarchical"
    clips_per_title: int = Field(4, ge=1, description="C: clips per title in a batch (1 = uniform over titles)")
    title_weighting: Literal["uniform", "duration"] = Field("uniform", description="how titles are drawn")
    shots: Literal["any", "same", "different"] = Field("any", description="C clips within one shot or across shots")
    level: Literal["title", "show"] = Field("title", description="show: T shows, C episodes of each")
    min_gap_s: float = Field(0.0, ge=0, description="minimum gap between the C clips of a title, seconds")


class SyncPairSampling(Strict):
    """AVTS (METHODS.md §3): aligned positives, easy and hard negatives, with a curriculum."""

    kind: Literal["sync_pairs"] = "sync_pairs"
    positive_fraction: float = Field(0.5, ge=0, le=1, description="positives : negatives = 1 : 1 by default")
    hard_fraction: float = Field(0.25, ge=0, le=1, description="share of negatives that are hard after the switch")
    superhard_fraction: float = Field(0.0, ge=0, le=1, description="overlapping shifts (an ablation in AVTS)")
    switch_epoch: Optional[int] = Field(None, ge=0, description="curriculum: easy negatives only before this epoch")
    min_gap_s: float = Field(0.5, ge=0, description="hard negatives: gap between audio and video windows")
    superhard_min_shift_s: float = Field(0.1, ge=0, description="super-hard negatives: minimum shift")


class TemporalSampling(Strict):
    """Jenni et al. (METHODS.md §4): speed classes, reversal, intra- and inter-modal ordering pairs."""

    kind: Literal["temporal"] = "temporal"
    speeds: tuple[int, ...] = Field((1, 2, 4, 8), description="playback speeds by frame skipping")
    reverse_prob: float = Field(0.5, ge=0, le=1)
    ordering: bool = Field(True, description="a second, non-overlapping clip for intra-modal ordering")
    av_ordering: bool = Field(True, description="a video and an audio window at different times")
    min_gap_s: float = Field(0.0, ge=0, description="gap between the clips of an ordering pair")
    audio_speed: Literal["resample", "tempo"] = Field(
        "resample", description="how the sound is sped up: `resample` the waveform (tempo and pitch rise together) "
        "or `tempo` (the spectrogram's frames subsampled: a phase vocoder, pitch unchanged)"
    )


Sampling = Annotated[
    Union[UniformSampling, HierarchicalSampling, SyncPairSampling, TemporalSampling], Field(discriminator="kind")
]


class Data(Strict):
    catalog: Path = Field(description="catalog directory written by `avcli ingest`")
    synthetic: Optional[SyntheticWorld] = Field(
        None, description="if set and the catalog does not exist yet, generate the synthetic world there first"
    )
    clip: Clip = Clip()
    audio: AudioFeatures = AudioFeatures()
    augment: Augment = Augment()
    clips_per_item: int = Field(1, ge=1, description="clips drawn from each catalog item per epoch")
    sampler: Sampling = UniformSampling()
    max_consecutive_failures: int = Field(
        10, ge=1, description="clips in a row that may fail to decode (each replaced) before training stops"
    )


# --------------------------------------------------------------------------------------------- model


class Encoder(Strict):
    name: str = Field(description="registered encoder name (avcli.models.registry)")
    width: Optional[int] = Field(None, ge=4, description="base channel width; default the architecture's own")


class Projector(Strict):
    """MLP head per modality: feature → hidden (× layers − 1) → out, ReLU between, L2-normalised output."""

    hidden_dim: int = Field(512, ge=1)
    out_dim: int = Field(128, ge=1)
    layers: int = Field(2, ge=1, le=8, description="linear layers: 2 is feature→hidden→out; AVID-CMA's proj_dim "
                        "[512, 512, 128] (models/av_wrapper.py Head) is 3: 512→512, ReLU, 512→512, ReLU, 512→128")
    batch_norm: bool = Field(False, description="BatchNorm after each hidden layer (not in AVID; helps tiny towers)")


class Model(Strict):
    video: Encoder = Encoder(name="r2plus1d_18")
    audio: Encoder = Encoder(name="conv2d_10")
    projector: Projector = Projector()


# --------------------------------------------------------------------------------------------- method


class MemoryBankNegatives(Strict):
    """AVID's memory-bank variant (METHODS.md §1): one bank per modality with a row per catalog item (sized from
    the catalog when training starts), K negatives drawn uniformly excluding self, momentum update after scoring."""

    negatives: int = Field(1024, ge=1, description="K: bank negatives per query (capped at the number of items − 1)")
    momentum: float = Field(0.5, ge=0, le=1, description="m: bank[i] ← normalize(m·bank[i] + (1−m)·f_i)")
    loss: Literal["nce", "softmax"] = Field(
        "nce", description="nce: NCE with a constant partition estimate Z (first batch, then frozen); softmax: InfoNCE"
    )


class XID(Strict):
    """Cross-modal instance discrimination (METHODS.md §1): symmetric InfoNCE with in-batch negatives, or
    AVID's memory-bank NCE when `memory_bank` is set."""

    kind: Literal["xid"] = "xid"
    temperature: float = Field(0.07, gt=0, description="τ: softmax temperature of the logits")
    memory_bank: Optional[MemoryBankNegatives] = Field(None, description="None: in-batch negatives")


class FaultyPositiveWeights(Strict):
    """Robust-xID faulty positives (METHODS.md §2): w_i = w_min + (1 − w_min)·Φ((s_i − (μ + δσ)) / (σ√κ))."""

    delta: float = Field(0.0, description="δ: threshold shift in units of σ")
    kappa: float = Field(0.5, gt=0, description="κ: sharpness of the soft threshold")
    w_min: float = Field(0.25, ge=0, le=1, description="w_min: weight of the least trusted pairs")
    statistics: Literal["bank", "ema"] = Field(
        "bank",
        description="μ, σ of the agreement s: over the whole memory bank, recomputed each epoch, or an EMA of "
        "batch statistics",
    )
    ema_momentum: float = Field(0.99, ge=0, lt=1, description="EMA momentum when statistics is ema")
    start_epoch: int = Field(
        1, ge=0, description="epochs of plain xID before weighting (the bank holds only random rows before epoch 1)"
    )
    source: Literal["agreement", "known_faulty"] = Field(
        "agreement",
        description="where the weights come from: the rule above on the bank agreement (the method), or "
        "`known_faulty`: w_min for the pairs the catalog marks faulty and 1 for the others (an oracle, for worlds "
        "that know their faulty pairs: the best the weighting could do)",
    )


class SoftTargets(Strict):
    """Robust-xID faulty negatives (METHODS.md §2): y_ij = (1−λ)·1[i=j] + λ·S_ij."""

    estimator: Literal["bootstrap", "swapped", "cycle"] = Field("cycle", description="how S is estimated")
    lam: float = Field(0.5, ge=0, le=1, description="λ: weight of the estimated targets")
    tau_s: float = Field(0.02, gt=0, description="τ_s: temperature of the similarity term of S")
    tau_t: float = Field(0.07, gt=0, description="τ_t: temperature of the agreement terms (cycle)")
    start_epoch: int = Field(1, ge=0, description="epochs of one-hot targets first (bank features are random before)")


class RobustXID(Strict):
    """Robust cross-modal instance discrimination (Morgado et al. 2021, METHODS.md §2): in-batch xID whose pairs
    are weighted by their agreement (faulty positives) and whose targets are softened (faulty negatives). A
    memory bank of momentum-averaged embeddings (one row per catalog item) supplies the agreement s_i = v̄_i·ā_i,
    its statistics and the bank features v̄, ā of the soft-target estimators."""

    kind: Literal["robust_xid"] = "robust_xid"
    temperature: float = Field(0.07, gt=0, description="τ: softmax temperature of the logits")
    bank_momentum: float = Field(0.5, ge=0, le=1, description="m of the feature bank update")
    weights: Optional[FaultyPositiveWeights] = Field(FaultyPositiveWeights(), description="None: every pair weight 1")
    soft_targets: Optional[SoftTargets] = Field(SoftTargets(), description="None: one-hot targets")
    bank_negatives: Optional[int] = Field(
        None, ge=1, description="None: in-batch negatives; K: AVID's memory-bank form instead, each query scored "
        "(softmax, τ) against its own bank row and K bank rows drawn uniformly from the other items (capped at the "
        "items − 1), soft targets over those K + 1 candidates (AVID-CMA configs/main/avid/*/Cross-N1024.yaml "
        "num_negatives: 1024); the bank is the one above (momentum bank_momentum)")


class AVTS(Strict):
    """Audio-visual temporal synchronisation (Korbar et al. 2018, METHODS.md §3): are this video clip and this
    audio window in sync? Needs `data.sampler.kind: sync_pairs`, whose `switch_epoch` and `hard_fraction` are the
    curriculum."""

    kind: Literal["avts"] = "avts"
    loss: Literal["margin", "fused"] = Field(
        "margin",
        description="margin: contrastive margin loss on L2-normalised embeddings; fused: an MLP on the "
        "concatenated embeddings with binary cross-entropy",
    )
    margin: float = Field(0.99, gt=0, description="η: negatives are pushed at least this far apart (margin loss)")
    fused_hidden: int = Field(512, ge=1, description="hidden width of the fused classifier")
    fused_interactions: bool = Field(
        False, description="fused classifier input concat(v, a, v⊙a, |v−a|) instead of concat(v, a)"
    )
    batch_negatives: bool = Field(
        False,
        description="also treat every video–audio pairing across two different items of the batch as an easy "
        "negative (B·(B−1) more negatives per step; without them tiny CPU runs do not leave chance level)",
    )
    sync_bins: int = Field(
        0,
        ge=0,
        description="0: compare the towers' pooled embeddings (the projection heads); K > 0: time-aligned "
        "embeddings, K bins over the video clip's span from each tower's third stage (the audio bins cut from the "
        "part of its window the video covers), so *when* events happen survives (hard negatives differ only in that)",
    )
    center_embeddings: bool = Field(
        False,
        description="batch-normalise (no affine) each modality's sync embedding before the L2 norm, so the "
        "embeddings cannot collapse onto one point (the margin loss's do-nothing optimum at d = η/2)",
    )
    held_out_pairs: int = Field(
        256, ge=0, description="fixed pairs (half positives, negatives half easy, half hard) for sync accuracy"
    )
    held_out_every: int = Field(100, ge=1, description="steps between held-out sync accuracy measurements")


class Temporal(Strict):
    """Temporal self-supervision + contrastive learning (Jenni et al. 2023, METHODS.md §4); needs
    `data.sampler.kind: temporal`. Every term has a weight; 0 switches it off."""

    kind: Literal["temporal"] = "temporal"
    speed: float = Field(1.0, ge=0, description="playback-speed classification (video and audio)")
    direction: float = Field(1.0, ge=0, description="forward / reversed classification (video and audio)")
    order: float = Field(1.0, ge=0, description="intra-modal ordering of two clips (video and audio)")
    av_order: float = Field(1.0, ge=0, description="inter-modal ordering of a video and an audio clip")
    video_video: float = Field(1.0, ge=0, description="InfoNCE between two clips of one video")
    video_audio: float = Field(1.0, ge=0, description="InfoNCE between a clip and its audio")
    temperature: float = Field(0.1, gt=0, description="τ of the contrastive terms")
    video_audio_clip: Literal["main", "natural", "both"] = Field(
        "main", description="the clip whose video and sound form the video–audio pair: `main` (at the sampled "
        "speed and direction, both modalities transformed alike), `natural` (the second clip: speed 1, forward; "
        "the main clip of the same video then joins the extra negatives when it is transformed) or `both` (two "
        "pairs per sample, each the other's same-video negative)"
    )
    extra_positives: int = Field(1, ge=0, description="nearest neighbours of the positive in the feature queue")
    extra_positives_start_epoch: int = Field(
        1, ge=0, description="epochs without extra positives first: until the contrastive terms leave their "
        "starting plateau a queue neighbour is any other clip, and pulling towards it collapses the embeddings"
    )
    extra_negatives: bool = Field(
        True, description="the anchor clip reversed and the clip at the wrong speed as extra negatives"
    )
    queue_negatives: int = Field(
        0, ge=0, description="extra negatives sampled from the evolving feature space: this many past embeddings "
        "drawn uniformly from the feature queue per anchor (the paper's abstract: positives *and negatives* from the "
        "feature space [U]; how it samples them is not in avcli's sources, uniform draws are avcli's reading), from "
        "extra_positives_start_epoch on; 0: the transformed clips are the only extra negatives"
    )
    queue_size: Optional[int] = Field(None, ge=1, description="feature-queue length; default the number of items")
    head_hidden: int = Field(512, ge=1, description="hidden width of the ordering MLPs")
    held_out_pairs: int = Field(
        0, ge=0, description="fixed samples (the sampler's windows, drawn once from their own stream) on which the "
        "speed, direction and order heads are scored every `held_out_every` steps (metrics heldout_*_accuracy); "
        "0: none"
    )
    held_out_every: int = Field(100, ge=1, description="steps between held-out pretext accuracy measurements")


class Movies(Strict):
    """Cross-modal contrastive learning from movies and TV shows (Kalayeh et al. 2021, METHODS.md §5): symmetric
    InfoNCE over hierarchical batches (`data.sampler.kind: hierarchical`), whose C − 1 other clips of a title are
    the hard negatives; `data.sampler.level: show` for TV."""

    kind: Literal["movies"] = "movies"
    temperature: float = Field(0.07, gt=0, description="τ: softmax temperature of the logits")


Method = Annotated[Union[XID, RobustXID, AVTS, Temporal, Movies], Field(discriminator="kind")]


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


class KNNHealth(Strict):
    """Online kNN accuracy of the encoders' features on a small labelled slice of the catalog (health metric)."""

    every: int = Field(100, ge=1, description="steps between measurements (and at the end)")
    items: int = Field(256, ge=2, description="labelled items in the slice, spread evenly over the catalog")
    k: int = Field(10, ge=1, description="neighbours voting (leave-one-out, cosine, weight exp(s/0.07))")


class Training(Strict):
    epochs: Optional[int] = Field(None, ge=1, description="length in passes over the catalog (or set steps)")
    steps: Optional[int] = Field(None, ge=1, description="length in optimiser steps (or set epochs)")
    batch_size: int = Field(32, ge=2, description="clips per micro-batch and process (global batch: × processes × "
                            "grad_accum_steps)")
    workers: int = Field(2, ge=0, description="data-loader worker processes")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$", description="auto picks CUDA when present")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast on GPUs with native bf16 (compute capability 8.0+), fp16 autocast "
        "with loss scaling on older GPUs (V100, T4), fp32 on CPU; bf16/fp16: that autocast (on CPU too)"
    )
    seed: int = 0
    log_every: int = Field(10, ge=1, description="steps between metrics.jsonl lines")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (one is always written at the end)")
    keep_last_n: int = Field(3, ge=1, description="checkpoints kept on disk")
    knn: Optional[KNNHealth] = Field(None, description="online kNN health metric (knn_video, knn_audio)")
    grad_accum_steps: int = Field(
        1, ge=1, description="micro-batches per optimiser step; global batch = batch_size × processes × this"
    )
    grad_clip: Optional[float] = Field(None, gt=0, description="clip the global gradient norm to this (grad_norm is "
                                       "logged); None: no clipping")
    max_nonfinite_steps: int = Field(
        5, ge=1, description="a step whose loss or gradient is not finite is skipped and counted (nonfinite_steps in "
        "metrics.jsonl); this many in a row stop training with an error"
    )
    channels_last: bool = Field(
        False, description="channels_last_3d (video) / channels_last (audio) memory format; try it on recent GPUs with "
        "bf16, where cuDNN's fastest convolutions want it"
    )
    compile: bool = Field(False, description="torch.compile the encoders (the first steps are slow while it compiles)")
    deterministic: bool = Field(
        False, description="deterministic kernels only: a resumed run repeats an uninterrupted one bit for bit (CPU; "
        "on CUDA a few kernels only warn); slower on GPU"
    )
    sync_batchnorm: bool = Field(
        True, description="with several processes, batch-norm statistics over the global batch (as one process "
        "computes them); false: per-process statistics, no extra communication"
    )
    dist_timeout_s: float = Field(
        600.0, gt=0, description="seconds a process waits for the others in a collective before the job fails"
    )
    tensorboard: bool = Field(False, description="also write RUN/tensorboard/ event files (needs the tensorboard "
                              "package)")

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
