"""Clip-consistent video augmentation, audio augmentation and SpecAugment (avcli.data.*_transforms)."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from pydantic import ValidationError
from torch.utils.data import default_collate

from avcli.data.audio_transforms import (
    apply_spec_masks,
    augment_waveform,
    mask_intervals,
    random_gain,
    reverse_audio,
    sample_spec_masks,
    spec_augment,
    speed_perturb,
    speed_up_audio,
    speed_up_tempo,
)
from avcli.data.video_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    apply_video_params,
    augment_video,
    augment_video_batch,
    eval_video,
    normalize_video,
    random_resized_crop_box,
    sample_video_params,
    stack_frames,
    train_video,
)
from avcli.recipe.schema import Augment

STRONG = Augment(crop_scale=(0.3, 1.0), color_jitter=(0.4, 0.4, 0.4, 0.2), grayscale_prob=0.5)
PLAIN = Augment(crop_scale=(1.0, 1.0), flip=False, color_jitter=(0, 0, 0, 0))  # full frame, no flip, no colour


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def frames(t=4, h=24, w=32, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (t, h, w, 3), dtype=torch.uint8, generator=gen(seed))


def params(crop, flip=False, jitter=(1.0, 1.0, 1.0, 0.0), order=(0, 1, 2, 3), gray=False) -> dict:
    return {
        "crop": torch.tensor(crop),
        "flip": torch.tensor(flip),
        "jitter": torch.tensor(jitter, dtype=torch.float32),
        "order": torch.tensor(order),
        "gray": torch.tensor(gray),
    }


def as_float(clip: torch.Tensor) -> torch.Tensor:  # T×H×W×3 uint8 → 3×T×H×W in [0, 1]
    return clip.permute(3, 0, 1, 2).float() / 255


# ----------------------------------------------------------------------------------------- video


@pytest.mark.parametrize("seed", range(6))
def test_every_frame_of_a_clip_gets_the_same_augmentation(seed):
    still = frames(t=1, seed=seed).expand(5, -1, -1, -1).contiguous()  # five identical frames
    out = train_video(still, 16, STRONG, gen(seed))
    assert out.shape == (3, 5, 16, 16) and out.dtype == torch.float32
    for t in range(1, 5):
        assert torch.equal(out[:, t], out[:, 0])
    batched = augment_video_batch(still[None], default_collate([sample_video_params(gen(seed), 24, 32, STRONG)]), 16)
    assert torch.allclose(batched[0, :, 1:], batched[0, :, :1].expand(-1, 4, -1, -1), atol=1e-6)


def test_same_seed_same_output_other_seed_other_output():
    clip = frames()
    a, b, c = (train_video(clip, 16, STRONG, gen(s)) for s in (7, 7, 8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(augment_video(clip, 16, STRONG, gen(3)), augment_video(clip, 16, STRONG, gen(3)))


def test_global_rng_is_not_used():
    clip = frames()
    torch.manual_seed(0)
    a = train_video(clip, 16, STRONG, gen(5))
    torch.manual_seed(123)
    b = train_video(clip, 16, STRONG, gen(5))
    assert torch.equal(a, b)


def test_forced_flip_mirrors_the_clip():
    clip = frames(h=16, w=16)
    plain = apply_video_params(clip, params((0, 0, 16, 16)), 16, normalize=False)
    flipped = apply_video_params(clip, params((0, 0, 16, 16), flip=True), 16, normalize=False)
    assert torch.equal(flipped, torch.flip(plain, dims=[-1]))
    assert torch.allclose(plain, as_float(clip), atol=1e-6)


def test_forced_crop_gives_the_boxed_pixels():
    clip = frames(t=2, h=20, w=30)
    out = apply_video_params(clip, params((3, 7, 10, 10)), 10, normalize=False)
    assert torch.allclose(out, as_float(clip[:, 3:13, 7:17]), atol=1e-6)
    out = apply_video_params(clip, params((3, 7, 10, 10)), 5, normalize=False)  # downscaled: a blurred box
    assert out.shape == (3, 2, 5, 5)
    assert torch.allclose(out.mean(), as_float(clip[:, 3:13, 7:17]).mean(), atol=0.02)


def test_crop_box_honours_scale_and_aspect_ranges():
    g = gen(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(g, 120, 160, (0.2, 0.5))
        assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 160
        assert 0.2 - 0.02 <= h * w / (120 * 160) <= 0.5 + 0.02
        assert 3 / 4 - 0.03 <= w / h <= 4 / 3 + 0.03
    assert random_resized_crop_box(g, 40, 40, (1.0, 1.0)) == (0, 0, 40, 40)  # fallback: the whole frame
    assert random_resized_crop_box(g, 40, 100, (1.0, 1.0)) == (0, 23, 40, 53)  # fallback: widest allowed box


def test_zero_strength_jitter_is_the_identity():
    clip = frames(h=16, w=16)
    p = sample_video_params(gen(1), 16, 16, PLAIN)
    assert p["jitter"].tolist() == [1.0, 1.0, 1.0, 0.0] and not p["flip"] and not p["gray"]
    out = train_video(clip, 16, PLAIN, gen(1), normalize=False)
    assert torch.allclose(out, as_float(clip), atol=1e-6)
    assert torch.equal(augment_video(clip, 16, PLAIN, gen(1)), clip.permute(3, 0, 1, 2))  # uint8 round trip


def test_each_jitter_op_is_torchvisions():
    clip = frames(t=2, h=12, w=12)
    x = as_float(clip).transpose(0, 1)  # T×3×H×W
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i, factor in enumerate((1.3, 0.7, 1.4, 0.15)):
        jitter = [1.0, 1.0, 1.0, 0.0]
        jitter[i] = factor
        out = apply_video_params(clip, params((0, 0, 12, 12), jitter=jitter), 12, normalize=False)
        assert torch.allclose(out, ops[i](x, factor).transpose(0, 1), atol=1e-5)


def test_grayscale_makes_channels_equal():
    out = apply_video_params(frames(), params((0, 0, 24, 32), gray=True), 8, normalize=False)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    p = [sample_video_params(gen(s), 24, 32, Augment(grayscale_prob=0.5))["gray"].item() for s in range(200)]
    assert 60 < sum(p) < 140
    assert not any(sample_video_params(gen(s), 24, 32, Augment())["gray"] for s in range(50))  # default off


def test_eval_is_a_centre_crop():
    clip = frames(t=2, h=6, w=8)
    out = eval_video(clip, 4)
    assert out.dtype == torch.uint8 and out.shape == (3, 2, 4, 4)
    assert torch.equal(out, clip[:, 1:5, 2:6].permute(3, 0, 1, 2))
    wide = torch.full((1, 8, 12, 3), 200, dtype=torch.uint8)
    resized = eval_video(wide, 3, short_side=4)  # 8×12 → 4×6 → centre 3×3
    assert resized.shape == (3, 1, 3, 3) and bool((resized == 200).all())
    norm = eval_video(clip, 4, normalize=True)
    assert torch.allclose(norm, normalize_video(out), atol=1e-6)


def test_normalisation_uses_imagenet_statistics():
    batch = torch.zeros(2, 3, 1, 2, 2, dtype=torch.uint8)
    batch[1] = 255
    out = normalize_video(batch)
    for c in range(3):
        assert torch.allclose(out[0, c], torch.tensor(-IMAGENET_MEAN[c] / IMAGENET_STD[c]))
        assert torch.allclose(out[1, c], torch.tensor((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))
    assert out[1, 0, 0, 0, 0].item() == pytest.approx(2.2489, abs=1e-4)
    clip = frames(h=16, w=16)
    trained = apply_video_params(clip, params((0, 0, 16, 16)), 16)
    assert torch.allclose(trained, normalize_video(clip.permute(3, 0, 1, 2)), atol=1e-5)


def test_batched_device_path_equals_per_sample_path():
    clips = [frames(h=24, w=32, seed=1), frames(h=32, w=24, seed=2), frames(h=24, w=24, seed=3), frames(seed=4)]
    per_sample = [sample_video_params(gen(10 + b), c.shape[1], c.shape[2], STRONG) for b, c in enumerate(clips)]
    for b, (flip, gray) in enumerate([(True, False), (False, True), (True, True), (False, False)]):
        per_sample[b]["flip"], per_sample[b]["gray"] = torch.tensor(flip), torch.tensor(gray)
    per_sample[3]["jitter"][3] = 0.0  # one sample without hue: ops skipped per sample
    batch = augment_video_batch(stack_frames(clips), default_collate(per_sample), 16)
    assert batch.shape == (4, 3, 4, 16, 16) and batch.dtype == torch.float32
    for b, clip in enumerate(clips):
        assert torch.allclose(batch[b], apply_video_params(clip, per_sample[b], 16), atol=1e-4)
    raw = augment_video_batch(stack_frames(clips), default_collate(per_sample), 16, normalize=False)
    assert torch.allclose(normalize_video(raw.mul(255)), batch, atol=1e-4)  # same pixels before normalising


def test_volume_gain_stays_in_range():
    gains = torch.stack([random_gain(torch.ones(4), 0.1, gen(s))[0] for s in range(300)])
    assert bool(((gains >= 0.9) & (gains <= 1.1)).all())
    assert gains.max() - gains.min() > 0.15
    assert torch.equal(random_gain(torch.ones(4), 0.0, gen(0)), torch.ones(4))


def peak_hz(wave: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(wave * torch.hann_window(wave.shape[-1])).abs()
    return float(spectrum.argmax()) * rate / wave.shape[-1]


def sine(hz: float, n: int, rate: int = 16000) -> torch.Tensor:
    return torch.sin(2 * math.pi * hz * torch.arange(n) / rate)


def test_speed_up_audio_doubles_the_frequency():
    wave = sine(440, 16000)
    fast = speed_up_audio(wave, 2, 8000)
    assert fast.shape == (8000,)
    assert peak_hz(fast, 16000) == pytest.approx(880, abs=4)
    assert peak_hz(speed_up_audio(wave, 4, 4000), 16000) == pytest.approx(1760, abs=8)
    assert torch.allclose(speed_up_audio(wave, 1, 8000), wave[:8000])
    batch = speed_up_audio(torch.stack([wave, -wave]), 2, 8000)  # works on a batch (…×N)
    assert batch.shape == (2, 8000) and torch.allclose(batch[1], -fast, atol=1e-6)


def test_speed_up_tempo_keeps_the_pitch_and_the_level_and_brings_events_earlier():
    wave = sine(440, 32000)
    for speed in (2, 4):
        fast = speed_up_tempo(wave, speed, 6400, 16000)
        assert fast.shape == (6400,)
        assert peak_hz(fast, 16000) == pytest.approx(440, abs=5)  # resampling would give 880 / 1760
        assert float(fast[800:-800].pow(2).mean().sqrt()) == pytest.approx(math.sqrt(0.5), rel=0.05)
    assert torch.allclose(speed_up_tempo(wave, 1, 8000, 16000), wave[:8000], atol=1e-4)
    burst = torch.zeros(32000)
    burst[4800:5600] = sine(440, 800)  # 50 ms of tone from 0.3 s
    fast = speed_up_tempo(burst, 2, 16000, 16000)
    loud = torch.nonzero(fast.abs() > 0.3).flatten() / 16000
    assert float(loud[0]) == pytest.approx(0.15, abs=0.01)  # 0.3 s played 2× fast
    assert float(loud[-1] - loud[0]) == pytest.approx(0.025, abs=0.01)  # and the burst half as long


def test_reverse_audio_reverses():
    wave = torch.arange(6.0).view(1, 6)
    assert reverse_audio(wave).tolist() == [[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]]
    assert torch.equal(reverse_audio(reverse_audio(wave)), wave)


def test_speed_perturb_keeps_length_and_scales_pitch():
    wave = sine(440, 16000)
    assert torch.equal(speed_perturb(wave, (1.0, 1.0), gen(0)), wave)
    slow = speed_perturb(wave, (0.5, 0.5), gen(0))
    assert slow.shape == wave.shape and peak_hz(slow, 16000) == pytest.approx(220, abs=4)
    fast = speed_perturb(wave, (1.25, 1.25), gen(0))
    assert fast.shape == wave.shape and peak_hz(fast, 16000) == pytest.approx(550, abs=6)
    aug = Augment(volume=0.0, speed_perturb=(0.8, 1.2))
    a, b = augment_waveform(wave, aug, gen(1)), augment_waveform(wave, aug, gen(1))
    assert torch.equal(a, b) and a.shape == wave.shape
    assert torch.equal(augment_waveform(wave, Augment(volume=0.0), gen(1)), wave)  # default: no speed change


def test_spec_augment_masks_the_configured_counts_and_widths():
    g = gen(0)
    spec = torch.ones(3, 1, 100, 40)  # B×1×T×F
    masks = [sample_spec_masks(g, 2, 5, 3, 10) for _ in range(3)]
    masks = default_collate(masks)
    assert masks["freq"].shape == (3, 2, 2) and masks["time"].shape == (3, 3, 2)
    out = apply_spec_masks(spec, masks)
    for b in range(3):
        zero_bins = (out[b, 0] == 0).all(dim=0)  # F
        zero_frames = (out[b, 0] == 0).all(dim=1)  # T
        expect_bins, expect_frames = torch.zeros(40, dtype=torch.bool), torch.zeros(100, dtype=torch.bool)
        for lo, hi in mask_intervals(masks["freq"][b], 40).tolist():
            assert 0 <= hi - lo <= 5 and 0 <= lo and hi <= 40
            expect_bins[lo:hi] = True
        for lo, hi in mask_intervals(masks["time"][b], 100).tolist():
            assert 0 <= hi - lo <= 10 and 0 <= lo and hi <= 100
            expect_frames[lo:hi] = True
        assert torch.equal(zero_bins, expect_bins) and torch.equal(zero_frames, expect_frames)
        assert zero_bins.sum() <= 10 and zero_frames.sum() <= 30
        assert torch.equal(out[b, 0] == 0, expect_frames[:, None] | expect_bins[None, :])  # nothing else touched


def test_spec_augment_widths_cover_zero_to_max_and_differ_per_sample():
    widths = set()
    for s in range(200):
        out = spec_augment(torch.ones(1, 50, 30), gen(s), freq_masks=1, freq_mask_width=6)
        widths.add(int((out[0] == 0).all(dim=0).sum()))
        assert not (out[0] == 0).all(dim=1).any()  # no time mask requested: no frame fully zeroed
    assert widths == set(range(7))
    out = spec_augment(torch.ones(8, 1, 50, 30), gen(0), time_masks=2, time_mask_width=20)
    patterns = {tuple((out[b, 0] == 0).all(dim=1).tolist()) for b in range(8)}
    assert len(patterns) > 1  # one set of masks per sample


def test_spec_augment_is_identity_when_off_and_mean_fill():
    spec = torch.randn(2, 1, 30, 20)
    assert torch.equal(spec_augment(spec, gen(0)), spec)
    out = spec_augment(spec + 5, gen(0), freq_masks=1, freq_mask_width=20, fill="mean")
    assert bool(((out == spec + 5) | torch.isclose(out, (spec + 5).mean(dim=(1, 2, 3), keepdim=True))).all())


# ----------------------------------------------------------------------------------------- recipe


def test_augment_defaults_keep_todays_behaviour():
    a = Augment()
    assert (a.grayscale_prob, a.speed_perturb, a.freq_masks, a.time_masks) == (0.0, None, 0, 0)
    assert (a.freq_mask_width, a.time_mask_width, a.on_device) == (8, 20, False)


@pytest.mark.parametrize(
    "bad",
    [
        {"crop_scale": (0.5, 0.2)},
        {"crop_scale": (0.0, 1.0)},
        {"crop_scale": (0.5, 1.2)},
        {"grayscale_prob": 1.5},
        {"speed_perturb": (1.2, 0.9)},
        {"speed_perturb": (0.0, 1.1)},
        {"freq_masks": -1},
        {"color_jitter": (0.4, 0.4, 0.4, 0.7)},
        {"color_jitter": (-0.1, 0.4, 0.4, 0.1)},
        {"on_device": "sometimes"},
    ],
)
def test_augment_rejects_out_of_range_values(bad):
    with pytest.raises(ValidationError):
        Augment(**bad)


def test_augment_reports_every_bad_field_at_once():
    with pytest.raises(ValidationError) as info:
        Augment(crop_scale=(0.9, 0.2), speed_perturb=(1.1, 0.9), grayscale_prob=2)
    assert {e["loc"][0] for e in info.value.errors()} == {"crop_scale", "speed_perturb", "grayscale_prob"}
