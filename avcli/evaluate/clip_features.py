"""Frozen features of many clips per video: V×K×D per feature for a ClipPlan of K clips.

One dataset item is one video with all its clips, decoded in one pass where they are close
(ClipReader.read_video_windows). Video tasks read each clip's frames and the audio window around them, as
EvalClips does (the video clip centred in the audio window); audio tasks read the whole recording once and cut
the windows planned from its length from it (ClipPlan.audio_starts): a recording shorter than the window is one
window, padded as the sampling says (`pad_recording`). Each item says how many distinct windows it has; the
features of a recording with fewer than the plan's K are repeated in order to fill its K slots, so a short
recording is encoded once, not K times, and every recording keeps K rows.

Feature names: "video", "audio" (the encoders' pooled outputs) and "audio.conv2x" .. "audio.conv5x" (the audio
encoder's stage maps pooled for the SVM protocol, avcli.models.stages).
"""

from __future__ import annotations

import random
from typing import Iterator

import torch
from torch.utils.data import Dataset

from avcli.data.video_transforms import augment_video, eval_video, normalize_video
from avcli.evaluate.clip_sampling import DEFAULT_PADDING, MIN_WINDOW_S, ClipPlan
from avcli.log import progress
from avcli.media.clip_reader import ClipReader
from avcli.models.stages import STAGE_NAMES, pooled_stages
from avcli.stop_signals import data_loader
from avcli.tasks.base import TaskVideo

AUDIO_LAYERS = tuple(f"audio.{name}" for name in STAGE_NAMES)


class VideoClips(Dataset):
    """Video index → {"video": K×3×T×S×S uint8, "audio": K×N float, "index"} for the plan's K clips."""

    def __init__(self, videos: list[TaskVideo], clip, plan: ClipPlan, want_video: bool, want_audio: bool,
                 audio_task: bool = False, audio_seconds: float | None = None, random_crop: bool = False,
                 padding: str = DEFAULT_PADDING):
        self.videos, self.clip, self.plan = videos, clip, plan
        self.want_video, self.want_audio = want_video and not audio_task, want_audio
        self.audio_task = audio_task
        self.audio_seconds = audio_seconds or clip.audio_seconds
        # fine-tuning: True, a random crop and flip instead of the centre crop; or an augmentation (an object with
        # crop_scale, flip and color_jitter, as data.augment): a random resized crop, flip and colour jitter
        self.random_crop = random_crop
        self.padding = padding  # audio tasks: a recording shorter than the window (clip_sampling.AUDIO_PADDINGS)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        video = self.videos[i]
        with ClipReader(video.media, video.video_stream, video.audio_stream, audio_only=self.audio_task) as reader:
            duration = video.duration_s if video.duration_s is not None else reader.duration_s
            item: dict = {"index": i}
            if self.audio_task:
                item["audio"] = self._recording_windows(reader, duration, video.path)
                return item
            starts = self.plan.starts(duration, self.audio_seconds, video.path)
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
            if self.random_crop is not True:  # an augmentation (crop_scale, flip, color_jitter): fine-tuning's
                gen = torch.Generator().manual_seed(rng.getrandbits(62))
                return torch.stack([augment_video(f, clip.size, self.random_crop, gen) for f in frames])
            return torch.stack([_random_crop_flip(f, clip.size, rng) for f in frames])
        return torch.stack([eval_video(f, clip.size) for f in frames])

    def _recording_windows(self, reader: ClipReader, duration: float, key: str) -> torch.Tensor:
        """k×N: the k ≤ K distinct windows planned from the recording's length."""
        rate = self.clip.sample_rate
        signal = reader.read_audio(0.0, duration, rate)
        window = int(round(self.audio_seconds * rate))
        if signal.numel() < window:
            return pad_recording(signal, window, self.padding, int(round(MIN_WINDOW_S * rate)))[None]
        starts = self.plan.audio_starts(duration, self.audio_seconds, key)
        offsets = [min(int(round(t * rate)), signal.numel() - window) for t in starts]
        return torch.stack([signal[o : o + window] for o in offsets])


def pad_recording(signal: torch.Tensor, window: int, padding: str, min_window: int = 1) -> torch.Tensor:
    """A recording shorter than `window` samples as one window: zeros after it (`start`), either side (`centre`,
    the extra zero after), before it (`end`), repeated to fill it (`tile`), or itself, centred in `min_window`
    zeros when shorter than that (`none`)."""
    if signal.numel() == 0:
        signal = torch.zeros(1)
    if padding == "tile":
        return signal.repeat(-(-window // signal.numel()))[:window]
    if padding == "none":
        window = max(signal.numel(), min_window)
        padding = "centre"
    gap = window - signal.numel()
    before = {"start": 0, "centre": gap // 2, "end": gap}[padding]
    return torch.nn.functional.pad(signal, (before, gap - before))


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
    """One batch: "index", "clips" (each item's number of clips), and "video"/"audio" concatenated, or for
    audio windows of different lengths (padding `none`) a list of each item's k×N tensor."""
    out = {"index": torch.tensor([item["index"] for item in items])}
    key = "video" if "video" in items[0] else "audio"
    if key in items[0]:
        out["clips"] = torch.tensor([item[key].shape[0] for item in items])
    for key in ("video", "audio"):
        if key in items[0]:
            parts = [item[key] for item in items]
            same = all(part.shape[1:] == parts[0].shape[1:] for part in parts)
            out[key] = torch.cat(parts) if same else parts
    return out


def fill_slots(feats: torch.Tensor, clips: torch.Tensor, count: int) -> torch.Tensor:
    """(Σk)×D features of items with k clips each → items×count×D, an item's k clips repeated in order."""
    out = []
    for part in feats.split(clips.tolist()):
        out.append(part[torch.arange(count) % part.shape[0]])
    return torch.stack(out)


def videos_per_batch(plan: ClipPlan, audio_task: bool, batch_clips: int) -> int:
    """The loader's batch, in videos: audio tasks plan as few windows as a recording's length allows, so they load
    `batch_clips` recordings at a time and encode their windows `batch_clips` at a time."""
    return batch_clips if audio_task else max(1, batch_clips // plan.count)


@torch.no_grad()
def clip_feature_batches(
    encoders, videos: list[TaskVideo], plan: ClipPlan, names: set[str], device: torch.device,
    audio_task: bool = False, audio_seconds: float | None = None, batch_clips: int = 32, workers: int = 0,
    description: str = "features", padding: str = DEFAULT_PADDING, start: int = 0,
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """(first video, {name: B×K×D float32 on the CPU}) for the videos from `start` on, batch by batch in order.
    Batches are cut from `start`, so a pass resumed at a batch boundary encodes the same batches as a whole one."""
    model, frontend = encoders.model.to(device).eval(), encoders.frontend.to(device).eval()
    want_video = "video" in names
    want_audio = any(name.startswith("audio") for name in names)
    dataset = VideoClips(videos[start:], encoders.recipe.data.clip, plan, want_video, want_audio, audio_task,
                         audio_seconds, padding=padding)
    loader = data_loader(dataset, batch_size=videos_per_batch(plan, audio_task, batch_clips), num_workers=workers,
                         collate_fn=collate_clips)

    def encode_audio(waves: torch.Tensor) -> dict[str, torch.Tensor]:
        found: dict[str, list[torch.Tensor]] = {}
        for chunk in waves.split(batch_clips):
            spectrogram = frontend(chunk.to(device))
            if "audio" in names:
                found.setdefault("audio", []).append(model.audio(spectrogram))
            if names & set(AUDIO_LAYERS):
                for layer, feats in pooled_stages(model.audio, spectrogram).items():
                    found.setdefault(f"audio.{layer}", []).append(feats)
        return {name: torch.cat(parts) for name, parts in found.items()}
    with progress() as bar:
        task_id = bar.add_task(description, total=len(videos), completed=start)
        for batch in loader:
            index = batch["index"]
            outputs = {}
            if want_video:
                outputs["video"] = model.video(normalize_video(batch["video"].to(device)))
            if want_audio:
                if isinstance(batch["audio"], list):  # windows of the recordings' own lengths: one at a time
                    each = [encode_audio(waves) for waves in batch["audio"]]
                    outputs.update({name: torch.cat([e[name] for e in each]) for name in each[0]})
                else:
                    outputs.update(encode_audio(batch["audio"]))
            yield start + int(index[0]), {name: fill_slots(feats.float().cpu(), batch["clips"], plan.count)
                                          for name, feats in outputs.items() if name in names}
            bar.advance(task_id, len(index))


def extract_clip_features(
    encoders, videos: list[TaskVideo], plan: ClipPlan, names: set[str], device: torch.device,
    audio_task: bool = False, audio_seconds: float | None = None, batch_clips: int = 32, workers: int = 0,
    description: str = "features", padding: str = DEFAULT_PADDING, into=None,
) -> dict:
    """{name: V×K×D float32 on the CPU} for the feature names asked for. `into` (a feature_shards.ShardedExtraction,
    from FeatureCache.writer): the features go to its shards batch by batch instead, from the first video it does
    not hold yet, and the result is {name: ShardedFeature} (memory: a shard, whatever the number of videos)."""
    args = (encoders, videos, plan, names, device, audio_task, audio_seconds, batch_clips, workers, description,
            padding)
    if into is not None:
        start = into.begin(len(videos), plan.count, videos_per_batch(plan, audio_task, batch_clips))
        for first, feats in clip_feature_batches(*args, start=start):
            into.add(first, feats)
        return into.finish()
    out: dict[str, torch.Tensor] = {}
    for first, feats in clip_feature_batches(*args):
        for name, rows in feats.items():
            if name not in out:
                out[name] = torch.zeros(len(videos), plan.count, rows.shape[2])
            out[name][first : first + rows.shape[0]] = rows
    return out


def sample_audio(encoders, videos: list[TaskVideo], audio_task: bool, audio_seconds: float | None,
                 count: int = 64, padding: str = DEFAULT_PADDING) -> list[torch.Tensor]:
    """One centred audio window (as the probe pads it) of each of up to `count` videos spread over the list, for
    fitting a random-init frontend's statistics (no labels are used)."""
    picks = torch.linspace(0, len(videos) - 1, min(count, len(videos))).round().long().tolist()
    dataset = VideoClips([videos[i] for i in picks], encoders.recipe.data.clip, ClipPlan("even", 1), False, True,
                         audio_task, audio_seconds, padding=padding)
    return [dataset[i]["audio"][0] for i in range(len(dataset))]
