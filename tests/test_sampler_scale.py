"""Samplers and catalog loading made to scale to a million items (issue 26) draw exactly what they drew before.

The digests below were taken with the per-item Python implementation (before the array-based one) on the same
20,000-row catalog: every sampler's whole epoch for ranks 0 and 5 of 8, two epochs, replacements and held-out
samples must stay identical, as must what `avcli ingest stats` counts. No timing here: benchmarks/catalog_scale.py
measures the speed.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest

from avcli.data.catalog import Catalog
from avcli.data.ingest_summary import catalog_summary
from avcli.data.samplers import HierarchicalSampler, SyncPairSampler, TemporalSampler, UniformSampler

ROWS = 20_000
CLIP = SimpleNamespace(frames=8, fps=16.0, audio_seconds=2.0, max_offsync_s=0.5)


def _rows(n: int) -> list[dict]:
    """Rows as ingest writes them, with the awkward cases: items shorter than a clip, no duration, no title or
    show, no shots, a transcoded copy on most (its duration wins), rejected rows."""
    rng = np.random.default_rng(26)
    rows = []
    for i in range(n):
        duration = float(rng.choice([rng.uniform(0.3, 3.0), rng.uniform(3.0, 40.0), rng.uniform(40.0, 400.0)],
                                    p=[0.1, 0.6, 0.3]))
        status = "rejected" if i % 53 == 7 else "ok"
        row = {"item_id": f"{i:016x}", "path": f"/videos/{rng.integers(1 << 30):09d}/{i}.mp4", "status": status,
               "reject_reason": "no audio stream" if status == "rejected" else None,
               "flags": ["silent_audio"] if i % 31 == 0 else [], "duration_s": None if i % 997 == 5 else duration,
               "title_id": None if i % 13 == 0 else f"t{i // 6}", "show_id": None if i % 17 == 0 else f"s{i // 60}",
               "season": 1 + (i // 30) % 2, "episode": (i // 6) % 5, "label": f"c{i % 7}",
               "shots": [round(float(c), 3) for c in np.cumsum(rng.exponential(6.0, 12)) if c < duration]}
        if i % 4:
            row["media"] = {"path": f"media/{i}.mkv", "video_stream": 0, "audio_stream": 1, "fps": 16.0,
                            "width": 128, "height": 128, "audio_rate": 24000, "duration_s": round(duration * 0.99, 3)}
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale") / "catalog"
    with Catalog(root, create=True) as cat:
        cat.upsert(_rows(ROWS))
    return root


@pytest.fixture(scope="module")
def items(catalog):
    with Catalog(catalog) as cat:
        return cat.items(status="ok")


def _digest(values) -> str:
    return hashlib.sha256(repr(list(values)).encode()).hexdigest()[:16]


def _epoch_digest(make) -> str:
    """Whole epochs 0 and 1 of ranks 0 and 5 of 8, and replacements of a few of their samples."""
    parts = []
    for rank in (0, 5):
        sampler = make(rank)
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            batches = list(sampler)
            parts.append(_digest(batches))
            specs = [spec for batch in batches[:3] for spec in batch]
            parts.append(_digest(sampler.replacement(spec, attempt) for spec in specs[:20] for attempt in (0, 1)))
    return _digest(parts)


SAMPLERS = {
    "uniform": lambda items, rank: UniformSampler(items, CLIP, 16, 3, rank, 8, clips_per_item=2),
    "hierarchical-any": lambda items, rank: HierarchicalSampler(items, CLIP, 16, 3, rank, 8),
    "hierarchical-same-gap": lambda items, rank: HierarchicalSampler(items, CLIP, 12, 3, rank, 8, clips_per_title=3,
                                                                     shots="same", min_gap_s=0.5),
    "hierarchical-different-duration": lambda items, rank: HierarchicalSampler(
        items, CLIP, 16, 3, rank, 8, shots="different", title_weighting="duration"),
    "hierarchical-show": lambda items, rank: HierarchicalSampler(items, CLIP, 16, 3, rank, 8, level="show",
                                                                 shots="different", min_gap_s=1.0),
    "sync_pairs": lambda items, rank: SyncPairSampler(items, CLIP, 16, 3, rank, 8, switch_epoch=1,
                                                      superhard_fraction=0.25),
    "temporal": lambda items, rank: TemporalSampler(items, CLIP, 16, 3, rank, 8, min_gap_s=0.25),
}

EXPECTED = {
    'hierarchical-any': '1effb6463f733783',
    'hierarchical-different-duration': '24602a6a6e2c5d34',
    'hierarchical-same-gap': '9ee1a9995d09d601',
    'hierarchical-show': 'cd59d3ca17ffbabe',
    'sync_pairs': 'e945e240812c0e6f',
    'temporal': '32552283079930b0',
    'uniform': 'c131ba3ea60bc1a8',
    'held_out': 'badc8222d8ce799dcea043d1da9c05ba',
    'items': '61d592ad6c33c7ce',
    'stats': {'files': 20000, 'ok': 19622, 'rejected': 378, 'unchanged': 0, 'reject_reasons': {'no audio stream': 378}, 'flags': {'silent_audio': 646}, 'hours_ok': 425.6544},
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_plans_are_unchanged(items, name):
    assert len(items) == ROWS - len(range(7, ROWS, 53))
    assert _epoch_digest(lambda rank: SAMPLERS[name](items, rank)) == EXPECTED[name]


def test_held_out_samples_are_unchanged(items):
    sync = SyncPairSampler(items, CLIP, 16, 3, 0, 8)
    temporal = TemporalSampler(items, CLIP, 16, 3, 0, 8)
    assert _digest(sync.held_out_specs(64)) + _digest(temporal.held_out_specs(64)) == EXPECTED["held_out"]


def test_items_are_unchanged(catalog, items):
    assert _digest(repr(item).replace(str(catalog), "<catalog>") for item in items) == EXPECTED["items"]


def test_stats_are_unchanged(catalog):
    with Catalog(catalog) as cat:
        assert catalog_summary(cat).to_dict() == EXPECTED["stats"]


def test_stats_count_what_counting_row_by_row_counts(tmp_path):
    """`ingest stats` counts in SQL; the figures, and the order of reasons and flags with equal counts, are those
    of counting every row in path order (what it did before), on rows with empty reasons, repeated flags and
    copies with and without a duration."""
    from avcli.data.ingest_summary import IngestSummary

    rng = np.random.default_rng(7)
    rows = []
    for i in range(600):
        status = str(rng.choice(["ok", "ok", "rejected"]))
        rows.append({"item_id": str(i), "path": f"/p/{rng.integers(10**6):06d}-{i}", "status": status,
                     "reject_reason": [None, "", "a", "b"][i % 4] if status == "rejected" else None,
                     "flags": [str(f) for f in rng.choice(["x", "y", "z"], size=int(rng.integers(0, 4)))],
                     "duration_s": [None, 3.5, 7.25][i % 3],
                     "media": [None, {"path": "m", "duration_s": 2.5}, {"path": "m"}][i % 3 - 1]})
    with Catalog(tmp_path / "c", create=True) as cat:
        cat.upsert(rows)
        reference = IngestSummary()
        for row in cat.rows():
            reference.count(row)
        summary = catalog_summary(cat).to_dict()
    assert summary == reference.to_dict()
    assert list(summary["reject_reasons"]) == list(reference.to_dict()["reject_reasons"])
    assert list(summary["flags"]) == list(reference.to_dict()["flags"])
    assert summary["reject_reasons"]["unknown"] > 0 and len(summary["flags"]) == 3
