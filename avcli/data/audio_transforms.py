"""Audio augmentation (METHODS.md §0, §4): on the waveform, and SpecAugment on the spectrogram.

Waveform (mono, …×N, in the data worker): a volume gain from U(1−v, 1+v); optionally a speed change by
resampling (`speed_perturb`), which changes tempo and pitch together, like playing a tape faster or slower; and
the temporal transforms of METHODS.md §4, `reverse_audio` and two speed-ups: `speed_up_audio` (resample: tempo and
pitch) and `speed_up_tempo` (the spectrogram's frames subsampled: tempo only).

Spectrogram (after `AudioFrontend`, B×1×T×F or 1×T×F: time then frequency, AVID's orientation): SpecAugment
frequency and time masks. Mask positions are drawn per sample in the worker (`sample_spec_masks`, a small tensor
the DataLoader collates) and applied to the batch on the model's device (`apply_spec_masks`); `spec_augment`
does both at once. All randomness comes from an explicit `torch.Generator`.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torchaudio.functional as AF

SPEED_DENOMINATOR = 100  # speeds are rounded to a fraction p/q with q ≤ 100: small resampling kernels


# ----------------------------------------------------------------------------------------- waveform


def random_gain(wave: torch.Tensor, volume: float, gen: torch.Generator) -> torch.Tensor:
    """wave × g, g ~ U(1 − volume, 1 + volume) (AVID: volume 0.1)."""
    return wave * (1 - volume + 2 * volume * float(torch.rand((), generator=gen)))


def fit_length(wave: torch.Tensor, length: int, centre: bool = True) -> torch.Tensor:
    """Crop or zero-pad the last axis to `length`, keeping the centre (or the start when `centre=False`)."""
    n = wave.shape[-1]
    if n > length:
        start = (n - length) // 2 if centre else 0
        return wave[..., start : start + length]
    if n < length:
        before = (length - n) // 2 if centre else 0
        return torch.nn.functional.pad(wave, (before, length - n - before))
    return wave


def change_speed(wave: torch.Tensor, speed: float) -> torch.Tensor:
    """Play `speed` times faster (tempo and pitch both × speed): resample so N samples become about N / speed.

    The ratio is rounded to p/q with q ≤ SPEED_DENOMINATOR so torchaudio's polyphase kernel stays small (exact for
    integer speeds and for two-decimal factors such as 1.07)."""
    ratio = Fraction(speed).limit_denominator(SPEED_DENOMINATOR)
    if ratio == 1:
        return wave
    return AF.resample(wave, orig_freq=ratio.numerator, new_freq=ratio.denominator)


def speed_perturb(wave: torch.Tensor, speed_range: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """Speed (tempo + pitch) × s, s ~ U(lo, hi), then cropped/zero-padded about the centre to the input length:
    the video clip sits at the centre of the audio window, so the centre stays in sync."""
    speed = speed_range[0] + (speed_range[1] - speed_range[0]) * float(torch.rand((), generator=gen))
    return fit_length(change_speed(wave, speed), wave.shape[-1])


def augment_waveform(wave: torch.Tensor, augment, gen: torch.Generator) -> torch.Tensor:
    """The recipe's waveform augmentation (`data.augment`): speed perturbation if set, then the volume gain."""
    if getattr(augment, "speed_perturb", None) is not None:
        wave = speed_perturb(wave, tuple(augment.speed_perturb), gen)
    return random_gain(wave, augment.volume, gen)


def reverse_audio(wave: torch.Tensor) -> torch.Tensor:
    """Time reversal along the last axis (METHODS.md §4, direction)."""
    return wave.flip(-1)


def speed_up_audio(wave: torch.Tensor, speed: float, out_len: int) -> torch.Tensor:
    """The first speed·out_len samples played `speed` times faster, as exactly `out_len` samples (METHODS.md §4).

    "Resample the waveform": faster playback with the pitch raised by the same factor (a 440 Hz tone becomes
    880 Hz at 2×), like the video's frame skipping, which also speeds up everything in the clip. Input shorter than
    speed·out_len is zero-padded at the end."""
    span = int(round(speed * out_len))
    return fit_length(change_speed(fit_length(wave, span, centre=False), speed), out_len, centre=False)


TEMPO_HOP_S = 0.01  # the features' 10 ms hop (METHODS.md §0): output frame k comes from input frame speed·k


def speed_up_tempo(wave: torch.Tensor, speed: float, out_len: int, sample_rate: int) -> torch.Tensor:
    """The first speed·out_len samples of mono `wave` (N) played `speed` times faster with the pitch unchanged,
    as exactly `out_len` samples: METHODS.md §4's "subsample spectrogram frames", done on the waveform (a phase
    vocoder: STFT with a 10 ms hop, frames taken every `speed` frames with their phases advanced coherently,
    inverse STFT) so that the feature frontend stays one batched op. Unlike resampling, only the tempo carries the
    speed (events closer together, decays shorter): telling speeds apart means knowing how a sound normally
    unfolds, not hearing its pitch. Input shorter than speed·out_len is zero-padded at the end."""
    hop = max(1, int(round(TEMPO_HOP_S * sample_rate)))
    n_fft = 1 << max(1, math.ceil(math.log2(3 * hop)))  # a window of about 30 ms (512 at 16 kHz)
    span = int(round(speed * out_len))
    window = torch.hann_window(n_fft, dtype=wave.dtype)
    spec = torch.stft(fit_length(wave, span, centre=False), n_fft, hop, window=window, return_complex=True)
    phase_advance = torch.linspace(0, math.pi * hop, n_fft // 2 + 1, dtype=wave.dtype)[:, None]
    stretched = AF.phase_vocoder(spec, float(speed), phase_advance)
    return torch.istft(stretched, n_fft, hop, window=window, length=out_len)


# ----------------------------------------------------------------------------------------- spectrogram (SpecAugment)


def sample_spec_masks(
    gen: torch.Generator, freq_masks: int, freq_mask_width: int, time_masks: int, time_mask_width: int
) -> dict[str, torch.Tensor]:
    """One sample's SpecAugment masks, independent of the spectrogram's size: per mask a row (u, width) with
    u ~ U[0, 1) placing the mask and width ~ U{0, …, max width}. Shapes n×2; collated, B×n×2."""

    def draw(count: int, max_width: int) -> torch.Tensor:
        u = torch.rand(count, generator=gen, dtype=torch.float32)
        width = torch.randint(0, max_width + 1, (count,), generator=gen, dtype=torch.float32)
        return torch.stack([u, width], dim=-1)

    return {"freq": draw(freq_masks, freq_mask_width), "time": draw(time_masks, time_mask_width)}


def spec_masks_from_recipe(gen: torch.Generator, augment) -> dict[str, torch.Tensor]:
    """`sample_spec_masks` with the counts and widths of the recipe's `data.augment`."""
    return sample_spec_masks(
        gen, augment.freq_masks, augment.freq_mask_width, augment.time_masks, augment.time_mask_width
    )


def mask_intervals(masks: torch.Tensor, size: int) -> torch.Tensor:
    """(…, n, 2) rows (u, width) → (…, n, 2) integer [start, stop) intervals on an axis of `size` bins."""
    width = masks[..., 1].clamp(max=size)
    start = torch.minimum(torch.floor(masks[..., 0] * (size - width + 1)), size - width)
    return torch.stack([start, start + width], dim=-1).long()


def _axis_mask(masks: torch.Tensor, size: int, device) -> torch.Tensor:
    """(…, n, 2) → (…, size) bool: True inside any of the n intervals."""
    iv = mask_intervals(masks, size).to(device)
    pos = torch.arange(size, device=device)
    inside = (pos >= iv[..., 0:1]) & (pos < iv[..., 1:2])  # …×n×size
    return inside.any(dim=-2)


def apply_spec_masks(
    spec: torch.Tensor,
    masks: dict[str, torch.Tensor],
    time_dim: int = -2,
    freq_dim: int = -1,
    fill: str = "zero",
) -> torch.Tensor:
    """Mask bands and frame ranges of `spec` (B×…×T×F with masks B×n×2, or …×T×F with masks n×2).

    `fill="zero"` writes 0, which is the per-frequency mean of `AudioFrontend`'s normalised output;
    `fill="mean"` writes each sample's mean value (for unnormalised features)."""
    batched = masks["freq"].dim() == 3
    if masks["freq"].shape[-2] == 0 and masks["time"].shape[-2] == 0:
        return spec
    shape = [1] * spec.dim()
    hit = torch.zeros((), dtype=torch.bool, device=spec.device)
    for key, dim in (("freq", freq_dim), ("time", time_dim)):
        m = masks[key]
        if m.shape[-2] == 0:
            continue
        dim = dim % spec.dim()
        axis = _axis_mask(m, spec.shape[dim], spec.device)  # (B,)×size
        view = list(shape)
        view[dim] = spec.shape[dim]
        if batched:
            view[0] = spec.shape[0]
        hit = hit | axis.view(view)
    if fill == "zero":
        value = torch.zeros((), dtype=spec.dtype, device=spec.device)
    elif fill == "mean":
        value = spec.mean(dim=tuple(range(1 if batched else 0, spec.dim())), keepdim=True)
    else:
        raise ValueError(f"fill must be 'zero' or 'mean', not {fill!r}")
    return torch.where(hit, value, spec)


def spec_augment(
    spec: torch.Tensor,
    gen: torch.Generator,
    freq_masks: int = 0,
    freq_mask_width: int = 8,
    time_masks: int = 0,
    time_mask_width: int = 20,
    time_dim: int = -2,
    freq_dim: int = -1,
    fill: str = "zero",
) -> torch.Tensor:
    """SpecAugment (m_F masks of ≤ F bins, m_T masks of ≤ T frames), masks drawn from `gen`: one set per sample
    for a 4-d batch B×1×T×F, one set for a single 1×T×F / T×F spectrogram. Identity when both counts are 0."""
    draw = lambda: sample_spec_masks(gen, freq_masks, freq_mask_width, time_masks, time_mask_width)  # noqa: E731
    if spec.dim() == 4:
        per_sample = [draw() for _ in range(spec.shape[0])]
        masks = {k: torch.stack([m[k] for m in per_sample]) for k in ("freq", "time")}
    else:
        masks = draw()
    return apply_spec_masks(spec, masks, time_dim, freq_dim, fill)
