"""Frozen features of many clips per video: V×K×D per feature for a ClipPlan of K clips.

One dataset item is one video with all its clips, decoded in one pass where they are close
(ClipReader.read_video_windows). Video tasks read each clip's frames and the audio window around them, as
EvalClips does (the video clip centred in the audio window); audio tasks read the whole recording once, tile it
when it is shorter than the window (METHODS.md §6), and cut the windows from it.

Feature names: "video", "audio" (the encoders' pooled outputs) and "audio.conv2x" .. "audio.conv5x" (the audio
encoder's stage maps pooled for the SVM protocol, avcli.models.stages).
"""

from __future__ import annotations

import random

import torch
from torch.utils.data import Dataset

from avcli.data.video_transforms import eval_video, normalize_video
from avcli.evaluate.clip_sampling import ClipPlan
from avcli.log import progress
from avcli.media.clip_reader import ClipReader
from avcli.models.stages import STAGE_NAMES, pooled_stages
from avcli.stop_signals import data_loader
from avcli.tasks.base import TaskVideo

AUDIO_LAYERS = tuple(f"audio.{name}" for name in STAGE_NAMES)


class VideoClips(Dataset):
    """Video index → {"video": K×3×T×S×S uint8, "audio": K×N float, "index"} for the plan's K clips."""

    def __init__(self, videos: list[TaskVideo], clip, plan: ClipPlan, want_video: bool, want_audio: bool,
                 audio_task: bool = False, audio_seconds: float | None = None, random_crop: bool = False):
        self.videos, self.clip, self.plan = videos, clip, plan
        self.want_video, self.want_audio = want_video and not audio_task, want_audio
        self.audio_task = audio_task
        self.audio_seconds = audio_seconds or clip.audio_seconds
        self.random_crop = random_crop  # fine-tuning: a random crop and flip instead of the centre crop

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        video = self.videos[i]
        with ClipReader(video.media, video.video_stream, video.audio_stream, audio_only=self.audio_task) as reader:
            duration = video.duration_s if video.duration_s is not None else reader.duration_s
            starts = self.plan.starts(duration, self.audio_seconds, video.path)
            item: dict = {"index": i}
            if self.audio_task:
                item["audio"] = self._recording_windows(reader, duration, starts)
                return item
            if self.want_video:
                item["video"] = self._video_clips(reader, duration, starts, video.path)
            if self.want_audio:
                rate = self.clip.sample_rate
                item["audio"] = torch.stack([reader.read_audio(t, self.audio_seconds, rate) for t in starts])
        return item

    def _video_clips(self, reader: ClipReader, duration: float, starts: list[float], key: str) -> torch.Tensor:
        clip = self.clip
        seconds = clip.frames / clip.fps
        requests = [(min(t + (self.audio_seconds - seconds) / 2, max(duration - seconds, 0)), clip.frames, 1 / clip.fps)
                    for t in starts]
        frames = reader.read_video_windows(requests, clip.resize_to)
        if self.random_crop:
            rng = random.Random(f"crop:{self.plan.name}:{key}")
            return torch.stack([_random_crop_flip(f, clip.size, rng) for f in frames])
        return torch.stack([eval_video(f, clip.size) for f in frames])

    def _recording_windows(self, reader: ClipReader, duration: float, starts: list[float]) -> torch.Tensor:
        rate = self.clip.sample_rate
        signal = reader.read_audio(0.0, duration, rate)
        window = int(round(self.audio_seconds * rate))
        if signal.numel() == 0:
            signal = torch.zeros(1)
        if signal.numel() < window:  # tile a short recording to fill the window
            signal = signal.repeat(-(-window // signal.numel()))[:window]
        offsets = [min(int(round(t * rate)), signal.numel() - window) for t in starts]
        return torch.stack([signal[o : o + window] for o in offsets])


def _random_crop_flip(frames: torch.Tensor, size: int, rng: random.Random) -> torch.Tensor:
    """T×H×W×3 uint8 → 3×T×size×size: one random crop and maybe a horizontal flip for the whole clip."""
    if min(frames.shape[1:3]) < size:
        return eval_video(frames, size, short_side=size)
    top = rng.randint(0, frames.shape[1] - size)
    left = rng.randint(0, frames.shape[2] - size)
    clip = frames[:, top : top + size, left : left + size]
    if rng.random() < 0.5:
        clip = clip.flip(2)
    return clip.permute(3, 0, 1, 2).contiguous()


def collate_clips(items: list[dict]) -> dict:
    out = {"index": torch.tensor([item["index"] for item in items])}
    for key in ("video", "audio"):
        if key in items[0]:
            out[key] = torch.cat([item[key] for item in items])
    return out


@torch.no_grad()
def extract_clip_features(
    encoders, videos: list[TaskVideo], plan: ClipPlan, names: set[str], device: torch.device,
    audio_task: bool = False, audio_seconds: float | None = None, batch_clips: int = 32, workers: int = 0,
    description: str = "features",
) -> dict[str, torch.Tensor]:
    """{name: V×K×D float32 on the CPU} for the feature names asked for."""
    model, frontend = encoders.model.to(device).eval(), encoders.frontend.to(device).eval()
    want_video = "video" in names
    want_audio = any(name.startswith("audio") for name in names)
    dataset = VideoClips(videos, encoders.recipe.data.clip, plan, want_video, want_audio, audio_task, audio_seconds)
    loader = data_loader(dataset, batch_size=max(1, batch_clips // plan.count), num_workers=workers,
                        collate_fn=collate_clips)
    out: dict[str, torch.Tensor] = {}
    with progress() as bar:
        task_id = bar.add_task(description, total=len(videos))
        for batch in loader:
            index = batch["index"]
            outputs = {}
            if want_video:
                outputs["video"] = model.video(normalize_video(batch["video"].to(device)))
            if want_audio:
                spectrogram = frontend(batch["audio"].to(device))
                if "audio" in names:
                    outputs["audio"] = model.audio(spectrogram)
                if names & set(AUDIO_LAYERS):
                    layers = pooled_stages(model.audio, spectrogram)
                    outputs.update({f"audio.{layer}": feats for layer, feats in layers.items()})
            for name, feats in outputs.items():
                if name not in names:
                    continue
                if name not in out:
                    out[name] = torch.zeros(len(videos), plan.count, feats.shape[1])
                out[name][index] = feats.float().cpu().view(len(index), plan.count, -1)
            bar.advance(task_id, len(index))
    return out


def sample_audio(encoders, videos: list[TaskVideo], audio_task: bool, audio_seconds: float | None,
                 count: int = 64) -> torch.Tensor:
    """One centred audio window of up to `count` videos spread over the list (for fitting a random-init
    frontend's statistics: no labels are used)."""
    picks = torch.linspace(0, len(videos) - 1, min(count, len(videos))).round().long().tolist()
    dataset = VideoClips([videos[i] for i in picks], encoders.recipe.data.clip, ClipPlan("even", 1), False, True,
                         audio_task, audio_seconds)
    return torch.cat([dataset[i]["audio"] for i in range(len(dataset))])
