"""`avcli ingest`: media files → a catalog with training copies; plus `ingest merge` and `ingest stats`.

    avcli ingest SRC... --out CATALOG [--workers N] [--layout ucf101] [--titles t.csv] [--shard i/n]
    avcli ingest --synthetic N --out DIR
    avcli ingest merge SHARD... --out CATALOG
    avcli ingest stats CATALOG [--json]

`ingest` is a command group whose hidden default command ingests: a first argument that is not a sub-command's
name is an input, so `avcli ingest SRC...` works as it always has, and `avcli ingest --help` lists `merge` and
`stats`. One JSON line per file on stdout, a summary on stderr; exit 3 when more inputs than
--max-reject-fraction were rejected. (A file literally called `merge` or `stats` is given as ./merge.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from avcli.commands.default_group import DefaultCommand, DefaultCommandGroup
from avcli.commands.output import emit
from avcli.data.catalog import Catalog
from avcli.data.ingest import IngestOptions, ingest_paths, ingest_synthetic
from avcli.data.ingest_summary import catalog_summary
from avcli.data.inputs import expand_inputs, in_shard, parse_shard
from avcli.errors import EXIT_OK, EXIT_REJECTED, UsageError
from avcli.log import get_logger, progress
from avcli.media.transcode import TranscodeOptions

log = get_logger("ingest")

_LINE_KEYS = ("item_id", "path", "status", "reject_reason", "flags", "duration_s", "fps", "width", "height",
              "rotation", "audio_rate", "audio_channels", "title_id", "show_id", "season", "episode", "label", "split")


def _row_line(row: dict) -> dict:
    line = {k: row.get(k) for k in _LINE_KEYS if row.get(k) not in (None, []) or k in ("status", "path")}
    if row.get("media"):
        line["usable_s"] = row["media"]["duration_s"]
    if row.get("shots"):
        line["shots"] = len(row["shots"])
    if row.get("unchanged"):
        line["unchanged"] = True
    return line


def _annotator(titles_csv: Optional[Path], layout_name: Optional[str], layout_meta: Optional[Path], roots: set):
    """path → catalog annotation (titles from --titles, the folder structure or the file; labels from --layout)."""
    from avcli.data.layouts import get_layout
    from avcli.data.titles import load_titles_csv, resolve_title

    table = load_titles_csv(titles_csv) if titles_csv else None
    layouts = {root: get_layout(layout_name, root, layout_meta) for root in roots} if layout_name else {}

    def annotate(path: Path, root: Path) -> dict:
        out = resolve_title(path, root, table)
        if layout_name:
            out.update(layouts[root].annotate(path))
        return {k: v for k, v in out.items() if v is not None or k in ("title_id",)}

    return annotate


def _run_ingest(inputs, out, options: IngestOptions, shard, titles, layout, layout_meta) -> int:
    selected = [(path, root) for path, root in expand_inputs(inputs, stdin=sys.stdin) if in_shard(path, shard)]
    root_of = {str(path): root for path, root in selected}
    annotate_with_root = _annotator(titles, layout, layout_meta, set(root_of.values()))
    with Catalog(out, create=True) as catalog, progress() as bar:
        task = bar.add_task("ingest", total=len(selected), info="")
        hours = 0.0

        def on_row(row: dict) -> None:
            nonlocal hours
            emit(_row_line(row))
            hours += ((row.get("media") or {}).get("duration_s") or row.get("duration_s") or 0) / 3600
            bar.update(task, advance=1, info=f"{hours:.2f} h of media")

        summary = ingest_paths(
            catalog, [path for path, _ in selected], options,
            annotate=lambda path: annotate_with_root(path, root_of[str(path)]), on_row=on_row,
        )
    log.info("ingested into %s: %s", out, summary.line())
    if summary.rejected and summary.reject_fraction > options.max_reject_fraction:
        return EXIT_REJECTED
    return EXIT_OK


def _run_merge(sources: list[str], out: Path) -> int:
    from avcli.data.merge import merge_catalogs

    summary = merge_catalogs([Path(s) for s in sources], out, on_row=lambda row: emit(_row_line(row)))
    log.info("merged %d catalogs into %s: %s", len(sources), out, summary.line())
    return EXIT_OK


def _run_stats(args: list[str], as_json: bool) -> int:
    if len(args) != 1:
        raise UsageError("ingest stats: give exactly one catalog folder, e.g. avcli ingest stats catalogs/movies")
    with Catalog(args[0]) as catalog:
        summary = catalog_summary(catalog)
    if as_json:
        emit(summary.to_dict())
    else:
        sys.stderr.write(f"{args[0]}: {summary.line()}\n")
    return EXIT_OK


HELP = "Probe, validate, transcode and index media (folders, files, or - for paths on stdin) into a catalog."


class _IngestGroup(DefaultCommandGroup):
    default_command = "files"


def register(app: typer.Typer) -> None:
    group = typer.Typer(cls=_IngestGroup, help=HELP, rich_markup_mode=None)

    @group.command("files", cls=DefaultCommand, hidden=True, help=HELP)
    def ingest(
        inputs: Optional[List[str]] = typer.Argument(None, help="Files, folders (recursive) or - (paths on stdin)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Catalog directory to create or extend."),
        workers: int = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0: one per core, up to 8)."),
        no_transcode: bool = typer.Option(False, "--no-transcode", help="Catalog only; read clips from the originals."),
        short_side: int = typer.Option(128, "--short-side", min=16, help="Short side of the copies (256 for 224-px training)."),
        fps: float = typer.Option(16.0, "--fps", min=1.0, help="Frame rate of the copies."),
        keyframe_interval: float = typer.Option(0.5, "--keyframe-interval", min=0.05, help="Seconds between keyframes."),
        audio_rate: int = typer.Option(24000, "--audio-rate", min=8000, help="Sample rate of the copies' mono audio."),
        no_audio_sidecar: bool = typer.Option(
            False, "--no-audio-sidecar", help="Do not write the WAV beside each copy (saves ~173 MB/h at 24 kHz)."
        ),
        shot_threshold: float = typer.Option(0.4, "--shot-threshold", min=0.0, max=1.0, help="Histogram distance of a cut."),
        titles: Optional[Path] = typer.Option(None, "--titles", help="CSV: path,title_id[,show_id,season,episode]."),
        layout: Optional[str] = typer.Option(None, "--layout", help="kinetics | ucf101 | hmdb51 | vggsound | folder."),
        layout_meta: Optional[Path] = typer.Option(None, "--layout-meta", help="Split files / label map of --layout."),
        shard: Optional[str] = typer.Option(None, "--shard", help="i/n: ingest a deterministic 1/n of the inputs."),
        max_reject_fraction: float = typer.Option(
            0.0, "--max-reject-fraction", min=0.0, max=1.0, help="Exit 3 only when more inputs than this are rejected."
        ),
        allow_no_audio: bool = typer.Option(False, "--allow-no-audio", help="Keep videos without an audio stream."),
        min_seconds: float = typer.Option(0.5, "--min-seconds", min=0.0, help="Reject files shorter than this."),
        synthetic: Optional[int] = typer.Option(
            None, "--synthetic", min=4, help="Generate N videos of the synthetic world into --out and ingest them."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the synthetic world."),
        # `avcli ingest --json stats C` and `avcli ingest --out C merge A B` (options before the sub-command's name)
        # reach this command; they keep working through the branches below.
        as_json: bool = typer.Option(False, "--json", hidden=True),
    ) -> int:
        inputs = list(inputs or [])
        if inputs and inputs[0] == "stats":
            return _run_stats(inputs[1:], as_json)
        if out is None:
            raise UsageError("ingest: --out CATALOG is required (the catalog folder to create or extend)")
        if inputs and inputs[0] == "merge":
            return _run_merge(inputs[1:], out)
        if synthetic is not None:
            if inputs:
                raise UsageError("--synthetic generates its own videos; give no input paths with it")
            from avcli.recipe.schema import SyntheticWorld

            with progress() as bar:
                task = bar.add_task("generating", total=synthetic)
                summary = ingest_synthetic(
                    SyntheticWorld(videos=synthetic, seed=seed), out,
                    on_row=lambda row: emit(_row_line(row)), on_video=lambda i: bar.advance(task),
                )
            log.info("synthetic world in %s: %s", out, summary.line())
            return EXIT_REJECTED if summary.rejected else EXIT_OK
        if not inputs:
            raise UsageError("give input files or folders (or - to read paths from stdin), or --synthetic N")
        options = IngestOptions(
            allow_no_audio=allow_no_audio,
            min_seconds=min_seconds,
            transcode=None if no_transcode else TranscodeOptions(
                short_side=short_side, fps=fps, keyframe_interval_s=keyframe_interval, audio_rate=audio_rate,
                audio_sidecar=not no_audio_sidecar,
                shot_threshold=shot_threshold,
            ),
            workers=workers or min(os.cpu_count() or 1, 8),
            max_reject_fraction=max_reject_fraction,
        )
        return _run_ingest(inputs, out, options, parse_shard(shard) if shard else None, titles, layout, layout_meta)

    @group.command("merge", help="Merge catalogs ingested as shards (--shard i/n) into one; one JSON line per row.")
    def merge(
        shards: List[str] = typer.Argument(..., help="Shard catalogs (folders written by avcli ingest --shard)."),
        out: Path = typer.Option(..., "--out", "-o", help="Catalog directory to create."),
    ) -> int:
        return _run_merge(list(shards), out)

    @group.command("stats", help="Counts by status, reject reason and flag, and hours of usable media, of a catalog.")
    def stats(
        catalog: str = typer.Argument(..., help="Catalog folder."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout (default: one line "
                                     "on stderr)."),
    ) -> int:
        return _run_stats([catalog], as_json)

    app.add_typer(group, name="ingest")
