"""The baseline fingerprint: a difference hash (dHash) of a few evenly spaced frames, searched by Hamming distance.

Per frame: grey, resized to 9×8, one bit per horizontally adjacent pixel pair (is the left one brighter?), 64
bits. A video's hash is its frames' bits concatenated. Bits are stored as ±1 so that the inner product of two
hashes is B − 2·Hamming: the exact chunked top-k search of embeddings then finds the nearest hashes too.
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF

from avcli.evaluate.features import evenly_spaced_starts
from avcli.media.clip_reader import ClipReader

HASH_FRAMES = 8


def dhash_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 T×H×W×3 → bool T×64."""
    grey = TF.rgb_to_grayscale(frames.permute(0, 3, 1, 2).float())  # T×1×H×W
    small = TF.resize(grey, [8, 9], antialias=True)[:, 0]  # T×8×9
    return (small[:, :, :-1] > small[:, :, 1:]).reshape(frames.shape[0], 64)


def dhash_video(path: str, duration_s: float, frames: int = HASH_FRAMES) -> torch.Tensor:
    """bool (frames·64,): the hashes of `frames` evenly spaced frames of the video."""
    times = evenly_spaced_starts(duration_s, 0.0, frames)
    with ClipReader(path) as reader:
        picked = reader.read_video_windows([(t, 1, 1.0) for t in times], short_side=64)
    return dhash_frames(torch.cat(picked)).reshape(-1)


def signed(bits: torch.Tensor) -> torch.Tensor:
    """bool N×B → float ±1, for inner-product search."""
    return bits.float() * 2 - 1


def hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise Hamming distances of bool hashes: A×B → |A|×|B| (the brute-force reference)."""
    return (a.unsqueeze(1) != b.unsqueeze(0)).sum(-1)
