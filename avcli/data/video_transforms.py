"""Clip-consistent video augmentation and evaluation transforms (METHODS.md §0).

Training draws one set of parameters per clip — a RandomResizedCrop box, a flip, colour-jitter factors in a
random order, a grayscale coin — and applies them to every frame, so a clip stays a coherent piece of video.
All randomness comes from an explicit `torch.Generator` (one per sample, seeded from the sampler): a sample's
augmentation depends only on the run seed and its position in the epoch, with any number of workers and after a
resume. Drawing (`sample_video_params`, cheap, on the CPU in the data worker) is kept apart from applying:

- `apply_video_params`: one clip on the CPU, torchvision's functional ops with scalar factors (the reference);
- `augment_video_batch`: a collated batch on any device with per-sample parameters, vectorised where the
  factors differ per sample (`augment.on_device`), so the pixel work can run on the GPU next to the model.

Both take uint8 frames T×H×W×3 (what ClipReader returns) and give float32 3×T×size×size (ImageNet-normalised
unless `normalize=False`). The parameters of one clip are a dict of small tensors, so the DataLoader's default
collate stacks them into the batched form `augment_video_batch` takes:

    crop   int64 (4,)   top, left, height, width of the box in the input frame
    flip   bool  ()     mirror left-right
    jitter float (4,)   brightness, contrast, saturation factors (1 = unchanged) and hue shift (0 = unchanged)
    order  int64 (4,)   the order the four jitter ops are applied in (indices into `jitter`)
    gray   bool  ()     convert to 3-channel grayscale after the jitter
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop aspect-ratio range (width / height)
JITTER_IDENTITY = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation, hue

VideoParams = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------------------- drawing parameters


class UniformDraws:
    """Numbers from U(low, high) out of `gen`, drawn in blocks: one `torch.rand` call per block instead of one per
    number. A clip's parameters take about a dozen, and each call costs as much as copying a decoded frame."""

    def __init__(self, gen: torch.Generator, block: int = 32):
        self.gen, self.block, self.values = gen, block, iter(())

    def __call__(self, low: float = 0.0, high: float = 1.0) -> float:
        value = next(self.values, None)
        if value is None:
            self.values = iter(torch.rand(self.block, generator=self.gen).tolist())
            value = next(self.values)
        return low + (high - low) * value

    def integer(self, high: int) -> int:
        """Uniform on {0, …, high − 1}."""
        return min(int(self() * high), high - 1)


def _draws(gen: "torch.Generator | UniformDraws") -> UniformDraws:
    return gen if isinstance(gen, UniformDraws) else UniformDraws(gen)


def random_resized_crop_box(
    gen: "torch.Generator | UniformDraws", height: int, width: int, scale: tuple[float, float], ratio=CROP_RATIO
) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, h, w), drawn from `gen`: area fraction in `scale`, aspect log-uniform."""
    uniform = _draws(gen)
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * uniform(*scale)
        aspect = math.exp(uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return uniform.integer(height - h + 1), uniform.integer(width - w + 1), h, w
    # Fallback (as torchvision): the largest centred box whose aspect is inside `ratio`.
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def jitter_factors(gen: "torch.Generator | UniformDraws", strength) -> tuple[float, float, float, float]:
    """ColorJitter's factors: brightness/contrast/saturation from U(max(0, 1−s), 1+s), hue from U(−s, s)."""
    uniform = _draws(gen)
    out = list(JITTER_IDENTITY)
    for i, s in enumerate(strength[:3]):
        if s > 0:
            out[i] = uniform(max(0.0, 1 - s), 1 + s)
    if strength[3] > 0:
        out[3] = uniform(-strength[3], strength[3])
    return tuple(out)


def sample_video_params(gen: torch.Generator, height: int, width: int, augment) -> VideoParams:
    """One clip's parameters for a height×width input, from the recipe's `data.augment` and `gen` alone."""
    uniform = UniformDraws(gen)
    crop = random_resized_crop_box(uniform, height, width, tuple(augment.crop_scale))
    flip = bool(augment.flip) and uniform() < 0.5
    jitter = jitter_factors(uniform, augment.color_jitter)
    keys = [uniform() for _ in range(4)]
    order = sorted(range(4), key=keys.__getitem__)  # a uniformly random permutation
    p_gray = getattr(augment, "grayscale_prob", 0.0)
    gray = p_gray > 0 and uniform() < p_gray
    return {
        "crop": torch.tensor(crop, dtype=torch.int64),
        "flip": torch.tensor(flip),
        "jitter": torch.tensor(jitter, dtype=torch.float32),
        "order": torch.tensor(order, dtype=torch.int64),
        "gray": torch.tensor(gray),
    }


# ----------------------------------------------------------------------------------------- one clip (reference)

_CLIP_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """…×3×H×W float in [0, 1] → ImageNet-normalised (channel axis −3)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(3, 1, 1)
    return (x - mean) / std


def _crop_resize(clip: torch.Tensor, box, size: int) -> torch.Tensor:
    """T×3×H×W uint8 → T×3×size×size float in [0, 1]: slice the box, then antialiased bilinear resize."""
    top, left, h, w = box
    x = TF.to_dtype(clip[..., top : top + h, left : left + w], torch.float32, scale=True)
    return TF.resize(x, [size, size], antialias=True)


def apply_video_params(frames: torch.Tensor, params: VideoParams, size: int, normalize: bool = True) -> torch.Tensor:
    """T×H×W×3 uint8 → 3×T×size×size float32, the same crop, flip, jitter and grayscale for every frame."""
    x = _crop_resize(frames.permute(0, 3, 1, 2), params["crop"].tolist(), size)  # T×3×s×s
    if bool(params["flip"]):
        x = TF.horizontal_flip(x)
    factors = params["jitter"].tolist()
    for i in params["order"].tolist():
        if factors[i] != JITTER_IDENTITY[i]:  # a zero-strength op is skipped, so it is exactly the identity
            x = _CLIP_OPS[i](x, factors[i])
    if bool(params["gray"]):
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if normalize:
        x = _normalize(x)
    return x.permute(1, 0, 2, 3).contiguous()


def train_video(frames: torch.Tensor, size: int, augment, gen: torch.Generator, normalize: bool = True) -> torch.Tensor:
    """T×H×W×3 uint8 → 3×T×size×size float32: draw this clip's parameters from `gen` and apply them."""
    params = sample_video_params(gen, frames.shape[1], frames.shape[2], augment)
    return apply_video_params(frames, params, size, normalize)


def augment_video(frames: torch.Tensor, size: int, augment, gen: torch.Generator) -> torch.Tensor:
    """Legacy form of `train_video`: 3×T×size×size uint8, to be normalised on the device with `normalize_video`."""
    x = train_video(frames, size, augment, gen, normalize=False)
    return x.mul(255).round_().to(torch.uint8)


# ----------------------------------------------------------------------------------------- a batch, on any device


def _hue_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of …×3×H×W float RGB in [0, 1] by `shift` (turns, broadcast over …×H×W).

    The same transform as torchvision's `adjust_hue`, written so that every sample can have its own shift.
    HSV → RGB uses the closed form channel_n = v − v·s·clamp(min(k, 4 − k), 0, 1), k = (n + 6h) mod 6.
    """
    r, g, b = x.unbind(-3)
    v, _ = x.max(dim=-3)
    chroma = v - x.min(dim=-3).values
    grey = chroma == 0
    safe = torch.where(grey, torch.ones_like(chroma), chroma)
    sat = torch.where(grey, torch.zeros_like(v), chroma / torch.where(v == 0, torch.ones_like(v), v))
    hue6 = torch.where(v == r, (g - b) / safe, torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue6 = torch.where(grey, torch.zeros_like(hue6), hue6)
    hue = torch.remainder(hue6 / 6 + shift, 1.0)
    out = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = torch.remainder(n + 6 * hue, 6.0)
        out.append(v - v * sat * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(out, dim=-3)


def _brightness(x, f):
    return (x * f).clamp_(0, 1)


def _contrast(x, f):
    mean = TF.rgb_to_grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)  # per frame, as torchvision does
    return (x * f + mean * (1 - f)).clamp_(0, 1)


def _saturation(x, f):
    return (x * f + TF.rgb_to_grayscale(x) * (1 - f)).clamp_(0, 1)


def _hue(x, f):
    return _hue_shift(x, f.squeeze(-3))


_BATCH_OPS = (_brightness, _contrast, _saturation, _hue)


def augment_video_batch(videos: torch.Tensor, params: VideoParams, size: int, normalize: bool = True) -> torch.Tensor:
    """B×T×H×W×3 uint8 (any device) + collated per-sample params → B×3×T×size×size float32 on that device.

    Equal, within float tolerance, to `apply_video_params` on each sample. The parameters may stay on the CPU:
    every decision about which sample gets which op is taken there, so nothing waits on the device.
    """
    B, T = videos.shape[:2]
    dev = videos.device
    params = {k: v.cpu() for k, v in params.items()}  # CPU already when they come from the loader: a no-op then
    x = torch.empty(B, T, 3, size, size, device=dev)
    for b, box in enumerate(params["crop"].tolist()):  # boxes differ in size: one resize per clip
        x[b] = _crop_resize(videos[b].permute(0, 3, 1, 2), box, size)
    flip = params["flip"].to(dev, non_blocking=True).view(B, 1, 1, 1, 1)
    x = torch.where(flip, TF.horizontal_flip(x), x)
    jitter, order = params["jitter"], params["order"]
    for step in range(4):
        for op in range(4):
            chosen = (order[:, step] == op) & (jitter[:, op] != JITTER_IDENTITY[op])
            if chosen.any():
                idx = chosen.nonzero().squeeze(1)
                f = jitter[idx, op].to(dev, non_blocking=True).view(-1, 1, 1, 1, 1)
                rows = idx.to(dev, non_blocking=True)
                x[rows] = _BATCH_OPS[op](x[rows], f)
    gray = params["gray"].to(dev, non_blocking=True).view(B, 1, 1, 1, 1)
    if bool(params["gray"].any()):
        x = torch.where(gray, TF.rgb_to_grayscale(x, num_output_channels=3), x)
    if normalize:
        x = _normalize(x)
    return x.permute(0, 2, 1, 3, 4).contiguous()


# BT.601 limited range (what every training copy holds, media/transcode.py) → full-range RGB, on 0–255 values
_YUV_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def split_i420(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """T×(H·3/2)×W uint8 (I420 as ClipReader returns it with yuv=True) → luma T×H×W×1 and chroma T×H/2×W/2×2,
    frame-shaped so that `stack_frames` pads clips of different sizes plane by plane."""
    T, rows, W = planes.shape
    H = rows * 2 // 3
    flat = planes.reshape(T, -1)
    luma = flat[:, : H * W].reshape(T, H, W, 1)
    chroma = flat[:, H * W :].reshape(T, 2, H // 2, W // 2).permute(0, 2, 3, 1)
    return luma, chroma


def yuv420_to_rgb(luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """…×H×W×1 luma + …×H/2×W/2×2 chroma (uint8, BT.601 limited range, any device) → …×H×W×3 uint8 RGB.

    Chroma is repeated 2×2 (nearest), as FFmpeg's own unscaled yuv420p → rgb24 conversion does: the result is
    within 3 code levels of the frames `ClipReader` converts on the CPU (mean difference about 1).
    """
    y = (luma.float() - 16.0) * (255.0 / 219.0)
    c = (chroma.float() - 128.0) * (255.0 / 224.0)
    c = c.repeat_interleave(2, dim=-3).repeat_interleave(2, dim=-2)
    u, v = c[..., :1], c[..., 1:]
    rgb = torch.cat([y + k_u * u + k_v * v for _, k_u, k_v in _YUV_TO_RGB], dim=-1)
    return rgb.round_().clamp_(0, 255).to(torch.uint8)


def stack_frames(clips: list[torch.Tensor]) -> torch.Tensor:
    """Stack T×H×W×3 clips of different frame sizes (mixed aspect ratios) into B×T×Hmax×Wmax×3, zero-padded at
    the bottom and right. The padding is never read: every crop box lies inside its own clip's frame."""
    T = clips[0].shape[0]
    H = max(c.shape[1] for c in clips)
    W = max(c.shape[2] for c in clips)
    out = clips[0].new_zeros(len(clips), T, H, W, clips[0].shape[3])
    for b, c in enumerate(clips):
        out[b, :, : c.shape[1], : c.shape[2]] = c
    return out


# ----------------------------------------------------------------------------------------- evaluation, normalisation


def eval_video(
    frames: torch.Tensor, size: int, short_side: int | None = None, normalize: bool = False
) -> torch.Tensor:
    """T×H×W×3 uint8 → 3×T×size×size: resize the short side to `short_side` (skipped when None or already so),
    then centre crop. uint8 by default (normalised on the device by `normalize_video`); float32 ImageNet-normalised
    with `normalize=True`."""
    clip = frames.permute(0, 3, 1, 2)
    if short_side is not None and min(clip.shape[-2:]) != short_side:
        clip = TF.resize(clip, [short_side], antialias=True)
    clip = TF.center_crop(clip, [size, size])
    if normalize:
        clip = _normalize(TF.to_dtype(clip, torch.float32, scale=True))
    return clip.permute(1, 0, 2, 3).contiguous()


def normalize_video(batch: torch.Tensor) -> torch.Tensor:
    """B×3×T×H×W (or 3×T×H×W) uint8 → float32 with ImageNet mean/std, on whatever device the batch is on."""
    x = batch.float() / 255.0
    return _normalize(x.transpose(-4, -3)).transpose(-4, -3)
