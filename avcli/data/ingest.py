"""Ingest: turn input files into catalog rows and training copies, in parallel, resumably.

Workers (`ingest_file.process_file`, one process each) probe and transcode; this process alone writes the
catalog, committing rows in small transactions only after their copies are complete. So a `kill -9` at any
moment loses at most the rows not yet committed, and the same command redoes exactly those: unchanged files
(same size, mtime and content-hash prefix, copy present) are skipped, stale temporary copies are removed, and
rows are replaced whole, never duplicated. Titles and dataset labels are computed here (cheap, no decoding)
and are refreshed on re-runs even for unchanged files.

A stop signal (SIGINT, SIGTERM, SIGUSR1), to this process alone or to its whole process group, ends the run
cleanly: the rows done so far are committed (a commit under way finishes first), the workers, which leave those
signals to this process (avcli/stop_signals.py), are ended, and the exit code is 4; the same command finishes.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from avcli.data.catalog import Catalog
from avcli.data.ingest_file import MEDIA_DIR, IngestOptions, media_files, process_file
from avcli.data.ingest_summary import IngestSummary
from avcli.errors import Interrupted, UsageError
from avcli.log import get_logger
from avcli.stop_signals import (StopSignal, helper_context, leave_stop_signals_to_parent, stop_signals_blocked,
                                stop_signals_raise)

log = get_logger("ingest")

# columns an annotation (titles, layouts, synthetic labels) may set; refreshed for unchanged files too
ANNOTATION_COLUMNS = ("title_id", "show_id", "season", "episode", "label", "split", "extra")

__all__ = ["IngestOptions", "IngestSummary", "ingest_paths", "ingest_synthetic"]


# transcode options added after catalogs were first written, with the value those catalogs were made with
_LEGACY_TRANSCODE = {"audio_sidecar": False}


def _flat(fingerprint: dict) -> dict:
    flat = {k: v for k, v in fingerprint.items() if k != "transcode"}
    if fingerprint.get("transcode") is None:
        flat["transcode"] = None
    else:
        flat.update({f"transcode.{k}": v for k, v in {**_LEGACY_TRANSCODE, **fingerprint["transcode"]}.items()})
    return flat


def _check_options(catalog: Catalog, options: IngestOptions) -> None:
    wanted = options.fingerprint()
    stored = catalog.get_meta("ingest_options")
    if stored is None:
        catalog.set_meta("ingest_options", wanted)
        return
    have, want = _flat(stored), _flat(wanted)
    changed = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
    if changed:
        raise UsageError(
            f"{catalog.root}: this catalog was ingested with different options "
            f"({', '.join(f'{k}: {have.get(k)} now {want.get(k)}' for k in changed)}); "
            "use the same options (e.g. --keyframe-interval, --no-audio-sidecar) or a new --out"
        )


def _remove_stale_partials(root: Path) -> None:
    """Temporary copies left by a killed run; their files are redone from scratch."""
    media = root / MEDIA_DIR
    if media.is_dir():
        for stale in media.glob("*/*.partial*"):
            stale.unlink(missing_ok=True)


def _results(paths: list[str], root: Path, options: IngestOptions, known: dict) -> Iterator[dict]:
    args = [(path, str(root), options, known.get(path)) for path in paths]
    if options.workers <= 1 or len(args) <= 1:
        for arg in args:
            yield process_file(*arg)
        return
    # spawn, not fork: the parent may run threads (rich progress, SQLite) that a fork would copy mid-flight
    context = helper_context("spawn")
    with stop_signals_blocked():  # a stop signal waits until the pool is whole, so that terminating it ends it all
        pool = context.Pool(options.workers, initializer=leave_stop_signals_to_parent, maxtasksperchild=200)
    with pool:
        try:
            yield from pool.imap_unordered(_process_star, args, chunksize=1)
        except BaseException:
            pool.terminate()
            raise


def _process_star(arg: tuple) -> dict:
    return process_file(*arg)


def _with_annotation(row: dict, annotation: dict) -> dict:
    extra = {**(row.get("extra") or {}), **(annotation.get("extra") or {})}
    return {**row, **annotation, "extra": extra}


def commit_rows(catalog: Catalog, rows: list[dict], summary: IngestSummary, on_row=None) -> None:
    """Write `rows` in one transaction, then count and report them (only committed rows are reported); clears
    the list."""
    catalog.upsert(rows)
    for row in rows:
        summary.count(row)
        if on_row:
            on_row(row)
    rows.clear()


def ingest_paths(
    catalog: Catalog,
    paths: Iterable[Path],
    options: IngestOptions,
    annotate: Callable[[Path], dict] | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> IngestSummary:
    """Process every path into the catalog; `on_row` sees each committed row (the CLI prints it as JSON)."""
    _check_options(catalog, options)
    _remove_stale_partials(catalog.root)
    stored = {row["path"]: row for row in catalog.rows()}
    known = {
        path: (row["size_bytes"], row["mtime"], row["content_hash"], media_files(row["media"]))
        for path, row in stored.items()
    }
    ordered = [str(p) for p in paths]
    summary = IngestSummary(started=time.monotonic())
    pending: list[dict] = []
    last_commit = time.monotonic()

    def commit() -> None:
        nonlocal last_commit
        with stops.held():  # rows are written and reported whole, or not at all
            commit_rows(catalog, pending, summary, on_row)
        last_commit = time.monotonic()

    with stop_signals_raise() as stops:
        try:
            for result in _results(ordered, catalog.root, options, known):
                path = result["path"]
                annotation = annotate(Path(path)) if annotate else {}
                if result.get("unchanged"):
                    row = stored[path]
                    refreshed = _with_annotation(row, annotation) if annotation else row
                    with stops.held():
                        if any(refreshed.get(k) != row.get(k) for k in ANNOTATION_COLUMNS):
                            catalog.upsert([refreshed])
                        summary.count(refreshed, unchanged=True)
                        if on_row:
                            on_row({**refreshed, "unchanged": True})
                    continue
                pending.append(_with_annotation(result, annotation))
                if len(pending) >= options.batch_size or time.monotonic() - last_commit > 1.0:
                    commit()
            commit()
        except KeyboardInterrupt as stop:  # Ctrl-C, or a stop signal to this process or its group
            commit()
            by = f" by {stop.signal}" if isinstance(stop, StopSignal) else ""
            raise Interrupted(
                f"ingest interrupted{by}; run the same command again to finish ({summary.done} files done)"
            ) from None
    summary.finish()
    return summary


def ingest_synthetic(spec, root: Path, on_row: Callable[[dict], None] | None = None, on_video=None) -> IngestSummary:
    """Generate the synthetic world under `root` and ingest it there, with labels, titles and splits.

    The generated files already have the size, rate and keyframe spacing of a training copy, so they are read
    directly (no transcode)."""
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
        paths = sorted(Path(p) for p in labels)
        return ingest_paths(catalog, paths, IngestOptions(transcode=None), annotate=annotate, on_row=on_row)
