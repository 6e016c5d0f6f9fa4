"""The media a fingerprint index or a query is made of: files, folders (walked recursively) and catalogs.

A catalog (a folder holding `catalog.sqlite`) contributes its usable items, read from their training copies
but reported under their original paths and stable item ids; other files are probed once with PyAV, and those
without a video stream or a known duration are skipped with a warning (they cannot be fingerprinted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avcli.data.catalog import DB_NAME, Catalog, item_id_for
from avcli.data.inputs import expand_inputs
from avcli.errors import UsageError
from avcli.log import get_logger
from avcli.media.probe import probe_media

log = get_logger("sources")


@dataclass(frozen=True)
class MediaSource:
    item_id: str
    path: str  # what the user knows the item by (the original file)
    source: str  # the file clips are decoded from (a catalog's training copy, or the file itself)
    duration_s: float
    video_stream: int | None = None
    audio_stream: int | None = None
    label: str | None = None
    audio_sidecar: str | None = None  # a training copy's WAV (media/pcm_sidecar.py)


def collect_sources(inputs: list[str]) -> list[MediaSource]:
    out: list[MediaSource] = []
    for raw in inputs:
        if (Path(raw) / DB_NAME).is_file():
            with Catalog(raw) as catalog:
                for item in catalog.items():
                    if item.duration_s:
                        out.append(MediaSource(item.item_id, item.path, item.source, float(item.duration_s),
                                               item.video_stream, item.audio_stream, item.label,
                                               item.audio_sidecar))
            continue
        for path, _root in expand_inputs([raw]):
            source = media_source(path)
            if source is not None:
                out.append(source)
    if not out:
        raise UsageError(f"{' '.join(inputs)}: no video files found; pass video files, folders or a catalog")
    return out


def media_source(path: str | Path) -> MediaSource | None:
    """A file as a MediaSource, or None (with a warning) when it has no usable video."""
    info = probe_media(path, allow_no_audio=True)
    if not info.ok:
        log.warning("%s: skipped (%s)", path, info.reject_reason)
        return None
    return MediaSource(item_id_for(path), str(path), str(path), float(info.duration_s), info.video_stream,
                       info.audio_stream)
