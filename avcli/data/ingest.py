"""Ingest: turn input paths into catalog rows (probe with PyAV, validate, record).

Every input file ends as exactly one row, `ok` or `rejected` with a one-line reason; nothing here raises for a
bad media file. Rows are committed in small transactions, so a killed ingest keeps what it finished and the
same command continues (unchanged files — same size and mtime — are skipped).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from avcli.data.catalog import Catalog, content_hash, item_id_for
from avcli.errors import UsageError
from avcli.media.probe import MediaInfo, probe_media


@dataclass
class IngestOptions:
    allow_no_audio: bool = False
    min_seconds: float = 0.5
    batch_size: int = 16  # rows per transaction


@dataclass
class IngestSummary:
    ok: int = 0
    rejected: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    seconds_ok: float = 0.0

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "rejected": self.rejected,
            "skipped_unchanged": self.skipped,
            "reject_reasons": self.reasons,
            "hours_ok": round(self.seconds_ok / 3600, 4),
        }


def expand_inputs(inputs: Iterable[str], stdin: Iterable[str] | None = None) -> Iterator[Path]:
    """Files from files, folders (recursive, sorted, hidden entries skipped) and `-` (one path per stdin line)."""
    for raw in inputs:
        if raw == "-":
            for line in stdin or ():
                line = line.rstrip("\n")
                if line.strip():
                    yield from expand_inputs([line])
            continue
        path = Path(raw).expanduser()
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if not name.startswith("."):
                        yield Path(dirpath) / name
        elif path.exists() or path.is_symlink():
            yield path
        else:
            raise UsageError(f"{raw}: no such file or folder")


def row_from_probe(info: MediaInfo, annotations: dict | None = None) -> dict:
    path = str(Path(info.path).resolve())
    row = {
        "item_id": item_id_for(path),
        "path": path,
        "size_bytes": info.size_bytes,
        "mtime": info.mtime,
        "content_hash": content_hash(path, info.size_bytes) if info.size_bytes and info.ok else None,
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
        "media_path": path if info.ok else None,
    }
    row.update(annotations or {})
    return row


def ingest_paths(
    catalog: Catalog,
    paths: Iterable[Path],
    options: IngestOptions,
    annotate: Callable[[Path], dict] | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> IngestSummary:
    """Probe each path and write its row; `on_row` sees every written row (the CLI prints it as JSON)."""
    summary = IngestSummary()
    known = catalog.known()
    pending: list[dict] = []

    def flush() -> None:
        catalog.upsert(pending)
        for row in pending:
            if on_row:
                on_row(row)
        pending.clear()

    for path in paths:
        resolved = str(path.resolve())
        try:
            stat = os.stat(resolved)
            previous = known.get(resolved)
            if previous and previous[0] == stat.st_size and previous[1] == stat.st_mtime:
                summary.skipped += 1
                continue
        except OSError:
            pass  # probe_media reports it as a rejection
        info = probe_media(path, allow_no_audio=options.allow_no_audio, min_seconds=options.min_seconds)
        row = row_from_probe(info, annotate(path) if annotate else None)
        if info.ok:
            summary.ok += 1
            summary.seconds_ok += info.duration_s or 0.0
        else:
            summary.rejected += 1
            summary.reasons[info.reject_reason] = summary.reasons.get(info.reject_reason, 0) + 1
        pending.append(row)
        if len(pending) >= options.batch_size:
            flush()
    flush()
    return summary


def ingest_synthetic(spec, root: Path, on_row: Callable[[dict], None] | None = None, on_video=None) -> IngestSummary:
    """Generate the synthetic world under `root` and ingest it there, with labels, titles and splits."""
    from avcli.media.synthetic import generate_world

    root = Path(root)
    generate_world(spec, root, on_video=on_video)
    with open(root / "labels.csv", newline="") as fh:
        labels = {str((root / row["path"]).resolve()): row for row in csv.DictReader(fh)}

    def annotate(path: Path) -> dict:
        row = labels[str(path.resolve())]
        return {
            "label": row["class_name"],
            "title_id": row["title_id"],
            "split": row["split"],
            "extra": {"class_id": int(row["class_id"]), "faulty": bool(int(row["faulty"]))},
        }

    with Catalog(root, create=True) as catalog:
        catalog.set_meta("synthetic_spec", spec.model_dump())
        paths = [root / row["path"] for row in labels.values()]
        return ingest_paths(catalog, sorted(paths), IngestOptions(), annotate=annotate, on_row=on_row)
