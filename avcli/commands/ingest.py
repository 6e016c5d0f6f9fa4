"""`avcli ingest SRC... --out CATALOG`: probe and validate media files into a catalog.

One JSON line per file on stdout, a summary on stderr; exit 3 when some inputs were rejected.
`--synthetic N` generates the built-in synthetic world (N videos) into --out and ingests it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from avcli.commands.output import emit
from avcli.data.catalog import Catalog
from avcli.data.ingest import IngestOptions, expand_inputs, ingest_paths, ingest_synthetic
from avcli.errors import EXIT_OK, EXIT_REJECTED, UsageError
from avcli.log import get_logger, progress

log = get_logger("ingest")


def _row_line(row: dict) -> dict:
    keys = ("item_id", "path", "status", "reject_reason", "duration_s", "fps", "width", "height", "rotation",
            "audio_rate", "audio_channels", "title_id", "label", "split")
    return {k: row.get(k) for k in keys if row.get(k) is not None or k in ("status", "path")}


def register(app: typer.Typer) -> None:
    @app.command("ingest", help="Probe, validate and index media files (folders, files, or - for stdin) into a catalog.")
    def ingest(
        inputs: Optional[List[str]] = typer.Argument(None, help="Files, folders (recursive) or - (paths on stdin)."),
        out: Path = typer.Option(..., "--out", "-o", help="Catalog directory to create or extend."),
        synthetic: Optional[int] = typer.Option(
            None, "--synthetic", min=4, help="Generate N videos of the synthetic world into --out and ingest them."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the synthetic world."),
        allow_no_audio: bool = typer.Option(False, "--allow-no-audio", help="Keep videos without an audio stream."),
        min_seconds: float = typer.Option(0.5, "--min-seconds", min=0.0, help="Reject files shorter than this."),
    ) -> int:
        if synthetic is not None:
            if inputs:
                raise UsageError("--synthetic generates its own videos; give no input paths with it")
            from avcli.recipe.schema import SyntheticWorld

            spec = SyntheticWorld(videos=synthetic, seed=seed)
            with progress() as bar:
                task = bar.add_task("generating", total=synthetic)
                summary = ingest_synthetic(
                    spec, out, on_row=lambda row: emit(_row_line(row)), on_video=lambda i: bar.advance(task)
                )
        else:
            if not inputs:
                raise UsageError("give input files or folders (or - to read paths from stdin), or --synthetic N")
            paths = list(expand_inputs(inputs, stdin=sys.stdin))
            options = IngestOptions(allow_no_audio=allow_no_audio, min_seconds=min_seconds)
            with Catalog(out, create=True) as catalog, progress() as bar:
                task = bar.add_task("ingest", total=len(paths))

                def on_row(row: dict) -> None:
                    emit(_row_line(row))
                    bar.advance(task)

                summary = ingest_paths(catalog, paths, options, on_row=on_row)
        counts = summary.to_dict()
        log.info(
            "ingested into %s: %d ok, %d rejected, %d unchanged (%.3f h of media)%s",
            out, counts["ok"], counts["rejected"], counts["skipped_unchanged"], counts["hours_ok"],
            "".join(f"; {n} × {reason}" for reason, n in counts["reject_reasons"].items()),
        )
        return EXIT_REJECTED if summary.rejected else EXIT_OK
