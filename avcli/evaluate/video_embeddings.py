"""Embeddings of clips and whole videos, in one of two feature spaces:

- `pooled`: the encoder's pooled feature (what the probes use, METHODS.md §6), one space per modality;
- `joint`: the projection heads' output, the shared audio-visual space xID trains, where an audio embedding
  can be compared with a video embedding (cross-modal retrieval).

A video-level embedding is the mean over evenly spaced clips (the retrieval protocol), L2-normalised so that
inner products are cosine similarities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avcli.data.video_transforms import normalize_video
from avcli.errors import UsageError
from avcli.evaluate.features import EvalClips
from avcli.stop_signals import data_loader
from avcli.tasks.base import TaskVideo

SPACES = ("pooled", "joint")
SILENCE = 1e-4  # peak amplitude below which a window counts as having no sound (digital silence, no stream)


def check_space(space: str) -> None:
    if space not in SPACES:
        raise UsageError(f"--space {space}: choose pooled or joint")


@torch.no_grad()
def encode_batch(encoders, batch: dict, modalities, space: str, device) -> dict[str, torch.Tensor]:
    """{"video": B×D, "audio": B×D} for a batch of eval clips (uint8 video, waveform audio), not normalised."""
    model = encoders.model
    out = {}
    if "video" in modalities:
        feats = model.video(normalize_video(batch["video"].to(device)))
        out["video"] = model.video_head(feats) if space == "joint" else feats
    if "audio" in modalities:
        feats = model.audio(encoders.frontend(batch["audio"].to(device)))
        out["audio"] = model.audio_head(feats) if space == "joint" else feats
    return {name: f.float() for name, f in out.items()}


def audible(waves: torch.Tensor) -> torch.Tensor:
    """B-vector: does each waveform carry sound (rather than digital silence or a missing stream)?"""
    return waves.abs().amax(dim=-1) > SILENCE


@torch.no_grad()
def embed_videos(
    encoders, videos: list[TaskVideo], clips_per_video: int, device, modalities=("video", "audio"),
    space: str = "pooled", batch_size: int = 32, workers: int = 0,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({modality: N×D L2-normalised mean of `clips_per_video` evenly spaced clips}, N-vector audible)."""
    check_space(space)
    encoders.model.to(device).eval()
    encoders.frontend.to(device).eval()
    dataset = EvalClips(videos, encoders.recipe.data.clip, clips_per_video)
    sums: dict[str, torch.Tensor] = {}
    heard = torch.zeros(len(videos), dtype=torch.bool)
    for batch in data_loader(dataset, batch_size=batch_size, num_workers=workers):
        index = batch["video_index"]
        heard[index[audible(batch["audio"])]] = True
        for name, feats in encode_batch(encoders, batch, modalities, space, device).items():
            if name not in sums:
                sums[name] = torch.zeros(len(videos), feats.shape[1])
            sums[name].index_add_(0, index, feats.cpu())
    return {name: F.normalize(total / clips_per_video, dim=1) for name, total in sums.items()}, heard
