"""Frozen-feature extraction: each video → the mean pooled encoder feature over evenly spaced clips."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from avcli.data.clip_dataset import ReaderCache
from avcli.data.video_transforms import eval_video, normalize_video
from avcli.stop_signals import data_loader
from avcli.tasks.base import TaskVideo


def evenly_spaced_starts(duration: float, window: float, count: int) -> list[float]:
    """Starts of `count` windows of `window` seconds spread evenly over [0, duration] (centres of equal bins)."""
    room = max(duration - window, 0.0)
    return [room * (k + 0.5) / count for k in range(count)]


class _Video:
    """Stand-in with the attributes ReaderCache needs: the file to decode (a catalog's training copy when the
    task was mapped onto one) and its streams."""

    def __init__(self, video: TaskVideo):
        self.source, self.video_stream, self.audio_stream = video.media, video.video_stream, video.audio_stream


class EvalClips(Dataset):
    """(video index, clip index) → centre-cropped clip and its audio window, no augmentation."""

    def __init__(self, videos: list[TaskVideo], clip, clips_per_video: int):
        self.videos = videos
        self.clip = clip
        self.clips_per_video = clips_per_video
        self.readers = ReaderCache(4)

    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    def __getitem__(self, i: int) -> dict:
        video = self.videos[i // self.clips_per_video]
        k = i % self.clips_per_video
        reader = self.readers.get(_Video(video))
        duration = video.duration_s if video.duration_s is not None else reader.duration_s
        audio_start = evenly_spaced_starts(duration, self.clip.audio_seconds, self.clips_per_video)[k]
        video_seconds = self.clip.frames / self.clip.fps
        video_start = min(audio_start + (self.clip.audio_seconds - video_seconds) / 2, max(duration - video_seconds, 0))
        frames = reader.read_video(video_start, self.clip.frames, self.clip.fps, self.clip.resize_to)
        audio = reader.read_audio(audio_start, self.clip.audio_seconds, self.clip.sample_rate)
        return {"video": eval_video(frames, self.clip.size), "audio": audio, "video_index": i // self.clips_per_video}


@torch.no_grad()
def extract_features(
    encoders, videos: list[TaskVideo], clips_per_video: int, device: torch.device, batch_size: int = 32,
    workers: int = 0, modalities: tuple[str, ...] = ("video", "audio"),
) -> dict[str, torch.Tensor]:
    """{"video": N×D, "audio": N×D} (the modalities asked for), averaged over each video's clips."""
    model, frontend = encoders.model.to(device).eval(), encoders.frontend.to(device).eval()
    dataset = EvalClips(videos, encoders.recipe.data.clip, clips_per_video)
    loader = data_loader(dataset, batch_size=batch_size, num_workers=workers)
    sums: dict[str, torch.Tensor] = {}
    for batch in loader:
        index = batch["video_index"].to(device)
        outputs = {}
        if "video" in modalities:
            outputs["video"] = model.video(normalize_video(batch["video"].to(device)))
        if "audio" in modalities:
            outputs["audio"] = model.audio(frontend(batch["audio"].to(device)))
        for name, feats in outputs.items():
            if name not in sums:
                sums[name] = torch.zeros(len(videos), feats.shape[1], device=device)
            sums[name].index_add_(0, index, feats.float())
    return {name: (total / clips_per_video).cpu() for name, total in sums.items()}
