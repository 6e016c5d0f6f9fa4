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
    summary = IngestSummary()
    for row in catalog.rows():
        summary.count(row)
    return summary
