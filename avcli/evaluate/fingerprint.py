"""Robust video fingerprints: segment embeddings of a collection, matched item by item.

Rows are segment embeddings (`segments.py`) of the encoders' pooled features, compared after centring on the
collection's mean and re-normalising: pooled post-ReLU features of any two videos have a high cosine, and centring puts unrelated
pairs near 0, so that a silent segment (audio part 0 in the combined embedding) is neutral rather than a
penalty. Three kinds of embedding are searched: `video`, `audio` (silent rows are 0, they match nothing) and
`combined` (`embedding_index.combine`: the mean of the video and audio cosines; a silent query is scored on
video alone).

A query file is matched segment by segment: each query segment's top rows (exact, chunked search), then per
indexed item the mean over query segments of the item's best row score (the segment's k-th score where the
item is not among its top rows). The best item's time offset is the median of (matched row start − query
segment start). The same-content decision compares the score with a calibrated threshold: at index time the
99th percentile of the best score between distinct items of the index; `fingerprint eval` replaces it with the
threshold that best separates corrupted copies from other items (`calibration.json`).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from avcli.errors import UsageError
from avcli.evaluate.embedding_index import EmbeddingIndex, combine
from avcli.evaluate.segments import embed_segments
from avcli.evaluate.topk import chunked_topk
from avcli.log import get_logger

log = get_logger("fingerprint")

KINDS = ("video", "audio", "combined")
CALIBRATION_JSON = "calibration.json"
NEGATIVE_QUANTILE = 0.99
ROWS_PER_SEGMENT = 64  # candidate rows kept per query segment before the per-item vote


@dataclass
class ItemMatch:
    item_id: str
    path: str
    score: float
    offset_s: float | None  # where in the indexed item the query starts


# ------------------------------------------------------------------------------------------ building


def build_fingerprint_index(encoders, sources, segment_s: float, device, batch_size: int = 32,
                            workers: int = 0) -> EmbeddingIndex:
    """Segment rows of the sources (stored L2-normalised, not centred) with the collection's centre and a
    calibration in `meta`."""
    index = embed_segments(encoders, sources, segment_s, device, space="pooled", batch_size=batch_size,
                           workers=workers)
    if len(index) == 0:
        raise UsageError("no segment of the given videos decodes; nothing to index")
    index.meta["centre"] = collection_centre(index)
    index.meta["calibration"] = calibrate_on_index(index)
    return index


def collection_centre(index: EmbeddingIndex) -> dict[str, list[float]]:
    """Each modality's mean row (audio: over audible rows only, silence is not part of the sound's spread)."""
    audible = index.audible()
    centres = {}
    for name, rows in index.vectors.items():
        use = rows[audible] if name == "audio" and audible.any() else rows
        centres[name] = use.mean(dim=0).tolist()
    return centres


def centred(index: EmbeddingIndex, centre: dict[str, list[float]]) -> EmbeddingIndex:
    """The rows minus a collection's centre, re-normalised (rows are stored uncentred, so that two collections
    can be compared in the frame of either)."""
    vectors = {name: F.normalize(rows - torch.tensor(centre[name], dtype=rows.dtype), dim=1)
               for name, rows in index.vectors.items()}
    return EmbeddingIndex(vectors, index.rows, index.meta)


# ------------------------------------------------------------------------------------------ matching


def gallery_vectors(index: EmbeddingIndex, kind: str) -> torch.Tensor:
    if kind == "audio":
        return index.embeddings("audio") * index.audible().float().unsqueeze(1)
    return index.embeddings(kind)


def query_vectors(queries: EmbeddingIndex, kind: str) -> torch.Tensor:
    if kind == "combined":
        # a silent query's audio half is 0, so its inner products are half its video cosines: double them
        heard = queries.audible().float().unsqueeze(1)
        return combine(queries.vectors["video"], queries.vectors["audio"], queries.audible()) * (2 / (1 + heard))
    return gallery_vectors(queries, kind)


def query_groups(rows: list[dict]) -> list[tuple[str, list[int]]]:
    """Consecutive rows of the same item: (item id, row numbers), in order."""
    groups: list[tuple[str, list[int]]] = []
    for r, row in enumerate(rows):
        if groups and groups[-1][0] == row["item_id"]:
            groups[-1][1].append(r)
        else:
            groups.append((row["item_id"], [r]))
    return groups


def rank_items(db: EmbeddingIndex, queries: EmbeddingIndex, kind: str, top: int | None = 5,
               exclude_self: bool = False, device=None, centre: dict | None = None) -> list[tuple[str, list[ItemMatch]]]:
    """For each query item (consecutive query rows with one item id): the `top` indexed items (None: every
    candidate), best first. Both sides are centred on `centre` (default: the indexed collection's)."""
    if kind not in KINDS:
        raise UsageError(f"--kind {kind}: choose video, audio or combined")
    centre = centre or db.meta["centre"]
    db, queries = centred(db, centre), centred(queries, centre)
    k = ROWS_PER_SEGMENT
    if exclude_self:  # the item's own rows must not crowd the others out of the candidate list
        k += max(len(rows) for _, rows in query_groups(db.rows))
    scores, found = chunked_topk(query_vectors(queries, kind), gallery_vectors(db, kind), min(k, len(db)),
                                 device=device)
    paths = {row["item_id"]: row["path"] for row in db.rows}
    out = []
    for item_id, rows in query_groups(queries.rows):
        best: dict[str, list] = {}  # db item → per query segment (score, offset) of its best row
        fills = []
        for j, r in enumerate(rows):
            seen: set[str] = set()
            fills.append(float(scores[r, -1]))
            for score, g in zip(scores[r].tolist(), found[r].tolist()):
                target = db.rows[g]["item_id"]
                if target in seen or (exclude_self and target == item_id):
                    continue
                seen.add(target)  # rows come best first: the first one of an item is its best
                offset = db.rows[g]["start_s"] - queries.rows[r]["start_s"]
                best.setdefault(target, [None] * len(rows))[j] = (score, offset)
        ranked = []
        for target, per_segment in best.items():
            total = sum(p[0] if p is not None else fill for p, fill in zip(per_segment, fills))
            offsets = [p[1] for p in per_segment if p is not None]
            ranked.append((total / len(rows), target, statistics.median(offsets)))
        ranked.sort(key=lambda t: -t[0])
        out.append((item_id, [ItemMatch(t, paths[t], round(s, 6), round(o, 3)) for s, t, o in ranked[:top]]))
    return out


# ------------------------------------------------------------------------------------------ calibration


def calibrate_on_index(index: EmbeddingIndex, kind: str = "combined") -> dict:
    """Threshold = the 99th percentile of each item's best score against the other items (distinct content)."""
    items = {row["item_id"] for row in index.rows}
    if len(items) < 2:
        return {"kind": kind, "threshold": None, "method": "index", "negatives": 0}
    ranked = rank_items(index, index, kind, top=1, exclude_self=True)
    negatives = torch.tensor([matches[0].score for _, matches in ranked if matches])
    threshold = float(torch.quantile(negatives, NEGATIVE_QUANTILE))
    return {"kind": kind, "threshold": round(threshold, 6), "method": "index", "negatives": len(negatives)}


def best_threshold(positives: list[float], negatives: list[float]) -> dict:
    """The threshold with the best balanced accuracy (midway between neighbouring scores), and its rates."""
    pos, neg = torch.tensor(positives), torch.tensor(negatives)
    candidates = torch.cat([pos, neg]).unique().sort().values
    mids = torch.cat([candidates[:1] - 1e-6, (candidates[1:] + candidates[:-1]) / 2, candidates[-1:] + 1e-6])
    tpr = (pos.unsqueeze(0) >= mids.unsqueeze(1)).float().mean(1)
    fpr = (neg.unsqueeze(0) >= mids.unsqueeze(1)).float().mean(1)
    i = int(torch.argmax(tpr - fpr))
    return {"threshold": round(float(mids[i]), 6), "tpr": round(float(tpr[i]), 4), "fpr": round(float(fpr[i]), 4),
            "positives": len(positives), "negatives": len(negatives)}


def load_calibration(index_dir: str | Path, meta: dict) -> dict:
    """`calibration.json` written by `fingerprint eval`, else the index's own negatives-only calibration."""
    path = Path(index_dir) / CALIBRATION_JSON
    if path.is_file():
        return json.loads(path.read_text())
    return meta.get("calibration", {"threshold": None})


def same_content(score: float, calibration: dict) -> bool | None:
    threshold = calibration.get("threshold")
    return None if threshold is None else bool(score >= threshold)
