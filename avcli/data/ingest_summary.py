"""What an ingest did, and what a catalog holds: counts by status, reason and flag, hours, throughput.

The same summary is logged at the end of `avcli ingest` and printed later by `avcli ingest stats CATALOG`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from avcli.data.catalog import Catalog


def usable_seconds(row: dict) -> float:
    """Seconds of media a row contributes: the copy's length when transcoded (it may stop at a decode error)."""
    if row.get("status") != "ok":
        return 0.0
    media = row.get("media")
    if isinstance(media, dict) and media.get("duration_s") is not None:
        return float(media["duration_s"])
    return float(row.get("duration_s") or 0.0)


@dataclass
class IngestSummary:
    by_status: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    flags: Counter = field(default_factory=Counter)
    unchanged: int = 0
    seconds_ok: float = 0.0
    seconds_processed: float = 0.0  # media seconds probed/transcoded in this run (not the unchanged ones)
    started: float = 0.0
    wall_s: float = 0.0

    def count(self, row: dict, unchanged: bool = False) -> None:
        self.by_status[row["status"]] += 1
        if row["status"] == "rejected":
            self.reasons[row.get("reject_reason") or "unknown"] += 1
        for flag in row.get("flags") or []:
            self.flags[flag] += 1
        seconds = usable_seconds(row)
        self.seconds_ok += seconds
        if unchanged:
            self.unchanged += 1
        else:
            self.seconds_processed += seconds

    @property
    def done(self) -> int:
        return sum(self.by_status.values())

    @property
    def ok(self) -> int:
        return self.by_status["ok"]

    @property
    def rejected(self) -> int:
        return self.by_status["rejected"]

    @property
    def reject_fraction(self) -> float:
        return self.rejected / self.done if self.done else 0.0

    def finish(self) -> None:
        self.wall_s = time.monotonic() - self.started

    def to_dict(self) -> dict:
        out = {
            "files": self.done,
            "ok": self.ok,
            "rejected": self.rejected,
            "unchanged": self.unchanged,
            "reject_reasons": dict(self.reasons.most_common()),
            "flags": dict(self.flags.most_common()),
            "hours_ok": round(self.seconds_ok / 3600, 4),
        }
        if self.wall_s:
            out["wall_s"] = round(self.wall_s, 2)
            out["media_s_per_wall_s"] = round(self.seconds_processed / self.wall_s, 2)
        return out

    def line(self) -> str:
        d = self.to_dict()
        text = f"{d['files']} files: {d['ok']} ok, {d['rejected']} rejected ({d['unchanged']} unchanged); {d['hours_ok']:.3f} h usable"
        if "wall_s" in d:
            text += f"; {d['wall_s']:.1f} s wall, {d['media_s_per_wall_s']:.1f} s of media per s"
        text += "".join(f"; {n} × {reason}" for reason, n in d["reject_reasons"].items())
        text += "".join(f"; flag {flag}: {n}" for flag, n in d["flags"].items())
        return text


def catalog_summary(catalog: Catalog) -> IngestSummary:
    """What `catalog` holds, counted by SQLite: a few aggregate passes over the table instead of a decoded row
    per item (a million rows as Python dicts took a minute and 3 GB). The same figures as counting the rows in
    path order with `IngestSummary.count`: groups are inserted in order of first appearance, so ties in
    `most_common` fall the same way. The one difference: hours are summed in table order, which can move the
    last bits of the float (hours are rounded to 4 decimals)."""
    db, summary = catalog.db, IngestSummary()
    for status, n in db.execute("SELECT status, COUNT(*) FROM items GROUP BY status ORDER BY MIN(path)"):
        summary.by_status[status] = n
    for reason, n in db.execute(
            "SELECT COALESCE(NULLIF(reject_reason, ''), 'unknown') AS reason, COUNT(*) FROM items "
            "WHERE status = 'rejected' GROUP BY reason ORDER BY MIN(path)"):
        summary.reasons[reason] = n
    # a flag's first appearance: the first row (by path) that has it, then its place in that row's list
    for flag, n in db.execute(
            "SELECT flag.value, COUNT(*) FROM items, json_each(items.flags) AS flag WHERE items.flags != '[]' "
            "GROUP BY flag.value ORDER BY MIN(items.path || char(0) || printf('%010d', flag.key))"):
        summary.flags[flag] = n
    # usable_seconds: the copy's length when it has one, else the probed duration
    (seconds,) = db.execute(
        "SELECT TOTAL(COALESCE(json_extract(media, '$.duration_s'), duration_s)) FROM items WHERE status = 'ok'"
    ).fetchone()
    summary.seconds_ok = summary.seconds_processed = float(seconds)
    return summary
