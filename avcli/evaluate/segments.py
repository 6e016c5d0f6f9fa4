"""Segment-level embeddings: one row per `segment_s` seconds of each video, to locate a match in time.

Segment k of a video covers [k·s, (k+1)·s) (the last one may be shorter; a video shorter than s is one
segment). Its video clip (the recipe's frames at the recipe's fps) and its audio window (the recipe's
audio_seconds) are both centred on the segment's centre, pulled inside the file near its ends. A segment that
does not decode (a file broken part-way) is left out with a warning; the rest of the file is kept.

`SegmentOptions` make the embeddings sturdier for copy detection, and are recorded in the index so that
queries are embedded the same way:
- `view="full"`: the whole frame squeezed to size×size instead of the centre square, so that a crop or an
  overlay near the edges of a wide frame changes less of what the encoder sees;
- `flip_invariant`: the mean of the features of the clip and of its mirror image (a flipped copy then has the
  same video embedding);
- `index_zooms`: extra index rows per segment showing the frame's centre enlarged (0.75: the central 75 % of
  each side), which a cropped copy resembles more than the whole frame; queries are embedded whole;
- `audio_band_hz`: the sound band-limited to 0–N Hz (resampled down and back) before the spectrogram: low
  bitrate codecs and broadband noise change the upper bands most, and the encoder would see them changed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torchaudio.functional as AF
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset

from avcli.data.clip_dataset import ReaderCache
from avcli.data.video_transforms import eval_video
from avcli.evaluate.embedding_index import EmbeddingIndex
from avcli.evaluate.sources import MediaSource
from avcli.evaluate.video_embeddings import audible, check_space, encode_batch
from avcli.log import get_logger
from avcli.media.clip_reader import ClipReadError
from avcli.stop_signals import data_loader

log = get_logger("segments")


@dataclass(frozen=True)
class SegmentOptions:
    view: str = "centre"  # "centre": the evaluation transform (short side, centre crop); "full": whole frame
    flip_invariant: bool = False
    audio_band_hz: int | None = None
    index_zooms: tuple[float, ...] = (1.0,)

    @classmethod
    def from_meta(cls, meta: dict) -> "SegmentOptions":
        fields = dict(meta.get("segment_options", {}))
        fields["index_zooms"] = tuple(fields.get("index_zooms", (1.0,)))
        return cls(**fields)

    def to_dict(self) -> dict:
        return asdict(self)


def plan_segments(duration_s: float, segment_s: float) -> list[tuple[float, float]]:
    """(start, end) of each segment: whole segments, plus the remainder when it is at least half a segment."""
    whole = int(math.floor(duration_s / segment_s + 1e-9))
    spans = [(k * segment_s, (k + 1) * segment_s) for k in range(whole)]
    rest = duration_s - whole * segment_s
    if not spans or rest >= segment_s / 2:
        spans.append((whole * segment_s, duration_s))
    return spans


def centred_start(centre: float, window: float, duration: float) -> float:
    """Start of a `window`-second window centred on `centre`, moved inside [0, duration] where it can be."""
    return min(max(centre - window / 2, 0.0), max(duration - window, 0.0))


class SegmentClips(Dataset):
    """Row r → the video clip and audio window of segment r (of all sources' segments, in order)."""

    def __init__(self, sources: list[MediaSource], segment_s: float, clip, view: str = "centre",
                 zooms: tuple[float, ...] = (1.0,)):
        self.sources = sources
        self.clip = clip
        self.view = view
        self.rows = [  # an item's rows stay together: segment by segment, each in every zoom
            (i, start, end, zoom) for i, src in enumerate(sources)
            for start, end in plan_segments(src.duration_s, segment_s) for zoom in zooms
        ]
        self.readers = ReaderCache(4)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, r: int) -> dict:
        i, start, end, zoom = self.rows[r]
        src = self.sources[i]
        centre = (start + end) / 2
        clip = self.clip
        video_start = centred_start(centre, clip.frames / clip.fps, src.duration_s)
        audio_start = centred_start(centre, clip.audio_seconds, src.duration_s)
        try:
            reader = self.readers.get(src)
            frames = reader.read_video(video_start, clip.frames, clip.fps, clip.resize_to)
            audio = reader.read_audio(audio_start, clip.audio_seconds, clip.sample_rate)
        except ClipReadError as exc:
            log.warning("%s: segment at %.1f s left out (%s)", src.path, start, exc)
            size = clip.size
            return {"video": torch.zeros(3, clip.frames, size, size, dtype=torch.uint8),
                    "audio": torch.zeros(int(round(clip.audio_seconds * clip.sample_rate))), "row": r, "ok": False}
        if zoom != 1.0:
            h, w = frames.shape[1:3]
            ch, cw = max(1, round(h * zoom)), max(1, round(w * zoom))
            frames = frames[:, (h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
        if self.view == "full":
            video = TF.resize(frames.permute(0, 3, 1, 2), [clip.size, clip.size], antialias=True).permute(1, 0, 2, 3)
        else:
            video = eval_video(frames, clip.size)
        return {"video": video.contiguous(), "audio": audio, "row": r, "ok": True}


@torch.no_grad()
def embed_segments(
    encoders, sources: list[MediaSource], segment_s: float, device, space: str = "pooled",
    modalities=("video", "audio"), batch_size: int = 32, workers: int = 0, options: SegmentOptions = SegmentOptions(),
    indexing: bool = False,
) -> EmbeddingIndex:
    """Segment rows of every source, L2-normalised, with item id, path, start/end time and audibility (and the
    zoom, for the extra rows of an index)."""
    check_space(space)
    encoders.model.to(device).eval()
    encoders.frontend.to(device).eval()
    clip = encoders.recipe.data.clip
    dataset = SegmentClips(sources, segment_s, clip, options.view, options.index_zooms if indexing else (1.0,))
    parts: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    rows: list[dict] = []
    for batch in data_loader(dataset, batch_size=batch_size, num_workers=workers):
        ok = batch["ok"]
        if not ok.any():
            continue
        batch = {"video": batch["video"][ok], "audio": batch["audio"][ok], "row": batch["row"][ok]}
        heard_batch = audible(batch["audio"])
        if options.audio_band_hz:
            band_rate = 2 * options.audio_band_hz
            batch["audio"] = AF.resample(AF.resample(batch["audio"], clip.sample_rate, band_rate), band_rate,
                                         clip.sample_rate)[:, : batch["audio"].shape[1]]
        feats = encode_batch(encoders, batch, modalities, space, device)
        if options.flip_invariant and "video" in modalities:
            mirrored = dict(batch, video=batch["video"].flip(-1))
            feats["video"] = (feats["video"] + encode_batch(encoders, mirrored, ("video",), space, device)["video"]) / 2
        for name, f in feats.items():
            parts[name].append(torch.nn.functional.normalize(f.cpu(), dim=1))
        for r, heard in zip(batch["row"].tolist(), heard_batch.tolist()):
            i, start, end, zoom = dataset.rows[r]
            src = sources[i]
            row = {"item_id": src.item_id, "path": src.path, "start_s": round(start, 3), "end_s": round(end, 3),
                   "audible": bool(heard and src.audio_stream is not None)}
            if zoom != 1.0:
                row["zoom"] = zoom
            if src.label is not None:
                row["label"] = src.label
            rows.append(row)
    vectors = {m: torch.cat(p) if p else torch.zeros(0, 1) for m, p in parts.items()}
    meta = index_meta(encoders, "segment", space, segment_s)
    meta["segment_options"] = options.to_dict()
    return EmbeddingIndex(vectors, rows, meta)


def index_meta(encoders, level: str, space: str, segment_s: float | None = None, clips: int | None = None) -> dict:
    """How rows were made: enough to embed a query the same way and to refuse a mismatched model."""
    clip = encoders.recipe.data.clip
    meta = {
        "level": level,
        "space": space,
        "checkpoint": encoders.checkpoint,
        "recipe_hash": encoders.recipe_hash,
        "video_model": encoders.recipe.model.video.name,
        "audio_model": encoders.recipe.model.audio.name,
        "clip": {"frames": clip.frames, "fps": clip.fps, "size": clip.size, "resize": clip.resize_to,
                 "audio_seconds": clip.audio_seconds, "sample_rate": clip.sample_rate},
    }
    if segment_s is not None:
        meta["segment_s"] = segment_s
    if clips is not None:
        meta["clips_per_video"] = clips
    return meta
