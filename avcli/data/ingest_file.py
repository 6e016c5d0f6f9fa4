"""One input file → one catalog row: check whether it changed, probe it, transcode the training copy.

`process_file` runs in ingest worker processes. It never raises for a bad file: whatever happens, it returns
a row, `ok` or `rejected` with a one-line reason, or a note that the file is unchanged since the last ingest.
The copy is written under a temporary name and renamed when complete (media/transcode.py), and the row that
points at it is committed by the parent only after that, so a killed ingest never leaves a row pointing at a
half-written file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from avcli.data.catalog import content_hash, item_id_for
from avcli.media.probe import MediaInfo, probe_media
from avcli.media.transcode import TranscodeOptions, transcode

MEDIA_DIR = "media"


@dataclass
class IngestOptions:
    allow_no_audio: bool = False
    min_seconds: float = 0.5  # shorter files (or usable parts of partly broken ones) are rejected
    transcode: TranscodeOptions | None = field(default_factory=TranscodeOptions)  # None: --no-transcode
    workers: int = 1
    batch_size: int = 16  # rows per transaction
    max_reject_fraction: float = 0.0  # exit code 3 when more of the inputs than this were rejected

    def fingerprint(self) -> dict:
        """What the catalog's rows depend on: a re-run with different values would mix incompatible copies."""
        copy = None if self.transcode is None else dict(vars(self.transcode))
        return {"transcode": copy, "allow_no_audio": self.allow_no_audio, "min_seconds": self.min_seconds}


def copy_path(item_id: str) -> str:
    """Where an item's training copy lives, relative to the catalog (fanned out: folders stay small)."""
    return f"{MEDIA_DIR}/{item_id[:2]}/{item_id}.mkv"


def media_files(media: dict | None) -> list[str]:
    """The files of a row's training copy, relative to the catalog: the copy and its audio sidecar if any."""
    if not media:
        return []
    return [media["path"]] + ([media["audio_sidecar"]] if media.get("audio_sidecar") else [])


def unchanged(path: str, previous: tuple | None, root: Path) -> bool:
    """Same size, mtime and content-hash prefix as when it was ingested, and its copy files still there."""
    if previous is None:
        return False
    size, mtime, digest, files = previous
    try:
        stat = os.stat(path)
        if (stat.st_size, stat.st_mtime) != (size, mtime):
            return False
        if digest is not None and content_hash(path, stat.st_size) != digest:
            return False
    except OSError:
        return False
    return all((root / name).is_file() for name in files)


def process_file(path: str, root: str, options: IngestOptions, previous: tuple | None) -> dict:
    """The row for `path`, or {"path", "unchanged": True} when it need not be processed again."""
    root_path = Path(root)
    if unchanged(path, previous, root_path):
        return {"path": path, "unchanged": True}
    try:
        return _row(path, root_path, options)
    except Exception as exc:  # a bug or an exotic failure on one file must not end a 10-hour ingest
        reason = f"could not be processed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        return _base_row(MediaInfo(path=path, reject_reason=reason))


def _base_row(info: MediaInfo) -> dict:
    path = info.path
    digest = None
    if info.size_bytes and info.reject_reason not in ("permission denied",):
        try:
            digest = content_hash(path, info.size_bytes)
        except OSError:
            digest = None
    return {
        "item_id": item_id_for(path),
        "path": path,
        "size_bytes": info.size_bytes,
        "mtime": info.mtime,
        "content_hash": digest,
        "status": "ok" if info.ok else "rejected",
        "reject_reason": info.reject_reason,
        "flags": [note.replace(" ", "_") for note in info.notes],
        "container": info.container,
        "start_s": info.start_s,
        "duration_s": info.duration_s,
        "fps": info.fps,
        "width": info.width,
        "height": info.height,
        "rotation": info.rotation,
        "video_stream": info.video_stream,
        "video_codec": info.video_codec,
        "audio_stream": info.audio_stream,
        "audio_codec": info.audio_codec,
        "audio_rate": info.audio_rate,
        "audio_channels": info.audio_channels,
        "media": None,
        "shots": [],
    }


def _row(path: str, root: Path, options: IngestOptions) -> dict:
    info = probe_media(path, allow_no_audio=options.allow_no_audio, min_seconds=options.min_seconds)
    row = _base_row(info)
    if not info.ok or options.transcode is None:
        return row
    relative = copy_path(row["item_id"])
    dest = root / relative
    dest.parent.mkdir(parents=True, exist_ok=True)
    result = transcode(
        path, dest, video_stream=info.video_stream, audio_stream=info.audio_stream, rotation=info.rotation,
        start_s=info.start_s, options=options.transcode,
    )
    row["flags"] = sorted(set(row["flags"]) | set(result.flags))
    if result.error:
        return {**row, "status": "rejected", "reject_reason": result.error}
    if result.duration_s < options.min_seconds:
        dest.unlink(missing_ok=True)
        where = f" (decoding fails at {result.decode_error_at_s:.1f} s)" if result.decode_error_at_s is not None else ""
        reason = f"shorter than one clip ({result.duration_s:.2f} s usable < {options.min_seconds:.2f} s){where}"
        return {**row, "status": "rejected", "reject_reason": reason}
    row["media"] = {
        "path": relative,
        "video_stream": 0,
        "audio_stream": 1 if result.audio_rate else None,
        "fps": result.fps,
        "width": result.width,
        "height": result.height,
        "audio_rate": result.audio_rate,
        "duration_s": result.duration_s,
    }
    if result.audio_sidecar is not None:
        row["media"]["audio_sidecar"] = result.audio_sidecar.relative_to(root).as_posix()
    row["shots"] = result.shots
    if result.decode_error_at_s is not None:  # kept up to the last good frame (flag partial_decode)
        row["extra"] = {"decode_error_at_s": round(result.decode_error_at_s, 3)}
    return row
