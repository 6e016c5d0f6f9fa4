"""`avcli ingest merge A B ... --out C`: combine the catalogs of `--shard i/n` runs into one.

Shards must have been ingested with the same options. Training copies are hard-linked into C when on the same
file system (copied otherwise) before the rows that point at them are committed, so a killed merge is resumed
by running it again. A file that appears in two shards (ingested twice) keeps the most recently modified row.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from avcli.data.catalog import Catalog
from avcli.data.ingest import commit_rows
from avcli.data.ingest_file import media_files
from avcli.data.ingest_summary import IngestSummary
from avcli.errors import UsageError


def _place(source: Path, dest: Path) -> None:
    if dest.is_file() and dest.stat().st_size == source.stat().st_size:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    temporary = dest.with_name(dest.name + ".partial")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copy2(source, temporary)
    os.replace(temporary, dest)


def merge_catalogs(sources: list[Path], out: Path, on_row: Callable[[dict], None] | None = None) -> IngestSummary:
    if not sources:
        raise UsageError("ingest merge: give the shard catalogs to combine, e.g. avcli ingest merge shard-* --out all")
    out_resolved = Path(out).resolve()
    options = None
    chosen: dict[str, tuple[dict, Path]] = {}
    for source in sources:
        if Path(source).resolve() == out_resolved:
            raise UsageError(f"ingest merge: {source} is also --out; write the merged catalog somewhere new")
        with Catalog(source) as shard:
            shard_options = shard.get_meta("ingest_options")
            if options is None:
                options = shard_options
            elif shard_options != options:
                raise UsageError(f"{source}: ingested with different options than {sources[0]}; re-ingest it alike")
            for row in shard.rows():
                previous = chosen.get(row["item_id"])
                if previous is None or (row["mtime"] or 0) > (previous[0]["mtime"] or 0):
                    chosen[row["item_id"]] = (row, shard.root)
    summary = IngestSummary()
    with Catalog(out, create=True) as merged:
        stored = merged.get_meta("ingest_options")
        if stored is not None and stored != options:
            raise UsageError(f"{out}: already holds a catalog ingested with different options; use a new --out")
        merged.set_meta("ingest_options", options)
        batch: list[dict] = []
        for row, root in sorted(chosen.values(), key=lambda pair: pair[0]["path"]):
            for name in reversed(media_files(row.get("media"))):  # sidecar first: a placed copy has its sidecar
                _place(root / name, merged.root / name)
            batch.append(row)
            if len(batch) >= 64:
                commit_rows(merged, batch, summary, on_row)
        commit_rows(merged, batch, summary, on_row)
    return summary
