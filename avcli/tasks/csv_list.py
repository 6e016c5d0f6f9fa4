"""`csv`: your own labelled media listed in a CSV file, `path,label[,split]` (a header row is optional).

Paths are relative to the CSV's folder (or absolute). The split column holds train/test (or val), or fold
numbers 1..k; without it, five deterministic stratified folds are made (labelled_files). --data-root is the CSV.
"""

from __future__ import annotations

import csv
from pathlib import Path

from avcli.errors import UsageError
from avcli.tasks.base import Task
from avcli.tasks.files import check_present
from avcli.tasks.labelled_files import labelled_files_task

LAYOUT = "--data-root list.csv with rows path,label[,split]; paths relative to the CSV's folder"


def load_csv(table: Path, meta: Path | None = None, allow_missing: bool = False) -> Task:
    table = Path(table)
    if table.is_dir():
        raise UsageError(f"--data-root {table}: the csv task takes the CSV file itself ({LAYOUT})")
    try:
        with open(table, newline="", encoding="utf-8-sig") as fh:
            rows = [(number, [cell.strip() for cell in cells]) for number, cells in enumerate(csv.reader(fh), 1)]
    except OSError as exc:
        raise UsageError(f"--data-root {table}: cannot read ({exc.strerror}); pass a CSV file ({LAYOUT})") from None
    rows = [(number, cells) for number, cells in rows if any(cells) and not cells[0].startswith("#")]
    if rows and rows[0][1][:2] == ["path", "label"]:
        rows = rows[1:]
    entries, listed, missing = [], [], []
    for number, cells in rows:
        if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
            raise UsageError(f"{table}:{number}: expected 'path,label[,split]', got {','.join(cells)!r}")
        path = Path(cells[0]) if Path(cells[0]).is_absolute() else table.parent / cells[0]
        listed.append(cells[0])
        if not path.is_file():
            missing.append(cells[0])
            continue
        entries.append((path, cells[1], cells[2] if len(cells) == 3 and cells[2] else None))
    if not listed:
        raise UsageError(f"{table}: no rows; list the files as {LAYOUT}")
    n_missing = check_present("csv", table.parent, listed, missing, str(table), allow_missing)
    return labelled_files_task("csv", table.parent, entries, n_missing=n_missing)
