"""Robust video fingerprints: segment embeddings of a collection, matched item by item.

Rows are segment embeddings (`segments.py`) of the encoders' pooled features, compared after centring on the
collection's mean and re-normalising: pooled post-ReLU features of any two videos have a high cosine, and centring puts unrelated
pairs near 0, so that a silent segment (audio embedding 0) is neutral rather than a penalty. Three kinds of embedding are searched: `video`, `audio` (silent rows are 0, they match nothing) and
`combined` (ranked by the sum of the video and audio scores standardised among the indexed items, scored by the
mean of the two cosines; a silent query is scored on video alone).

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
from avcli.evaluate.embedding_index import EmbeddingIndex
from avcli.evaluate.segments import SegmentOptions, embed_segments
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


FINGERPRINT_OPTIONS = SegmentOptions(view="full", flip_invariant=True, audio_band_hz=2500, index_zooms=(1.0, 0.75))


def build_fingerprint_index(encoders, sources, segment_s: float, device, batch_size: int = 32, workers: int = 0,
                            options: SegmentOptions = FINGERPRINT_OPTIONS) -> EmbeddingIndex:
    """Segment rows of the sources (stored L2-normalised, not centred) with the collection's centre and a
    calibration in `meta`."""
    index = embed_segments(encoders, sources, segment_s, device, space="pooled", batch_size=batch_size,
                           workers=workers, options=options, indexing=True)
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


def whole_frame_rows(index: EmbeddingIndex) -> EmbeddingIndex:
    """The rows that are not an index's extra zoomed views (a query is embedded from the whole frame)."""
    keep = [r for r, row in enumerate(index.rows) if "zoom" not in row]
    if len(keep) == len(index.rows):
        return index
    picked = torch.tensor(keep, dtype=torch.long)
    return EmbeddingIndex({n: v[picked] for n, v in index.vectors.items()}, [index.rows[r] for r in keep], index.meta)


def centred(index: EmbeddingIndex, centre: dict[str, list[float]]) -> EmbeddingIndex:
    """The rows minus a collection's centre, re-normalised (rows are stored uncentred, so that two collections
    can be compared in the frame of either)."""
    vectors = {name: F.normalize(rows - torch.tensor(centre[name], dtype=rows.dtype), dim=1)
               for name, rows in index.vectors.items()}
    return EmbeddingIndex(vectors, index.rows, index.meta)


def embed_queries(encoders, sources, meta: dict, device) -> EmbeddingIndex:
    """Query files' segment rows, made the way the index's rows were."""
    return embed_segments(encoders, sources, meta["segment_s"], device, meta["space"],
                          options=SegmentOptions.from_meta(meta))


# ------------------------------------------------------------------------------------------ matching


def gallery_vectors(index: EmbeddingIndex, kind: str) -> torch.Tensor:
    if kind == "audio":
        return index.embeddings("audio") * index.audible().float().unsqueeze(1)
    return index.embeddings(kind)


def query_groups(rows: list[dict]) -> list[tuple[str, list[int]]]:
    """Consecutive rows of the same item: (item id, row numbers), in order."""
    groups: list[tuple[str, list[int]]] = []
    for r, row in enumerate(rows):
        if groups and groups[-1][0] == row["item_id"]:
            groups[-1][1].append(r)
        else:
            groups.append((row["item_id"], [r]))
    return groups


@dataclass
class ItemScores:
    """One query item's scores in one modality: candidates' item scores and offsets, and the score every
    other indexed item is taken to have (the mean over query segments of each segment's k-th row score)."""

    scores: dict[str, float]
    offsets: dict[str, float]
    fill: float

    def get(self, item: str) -> float:
        return self.scores.get(item, self.fill)

    def standardised(self, n_items: int) -> tuple[dict[str, float], float]:
        """Candidates' z-scores among all `n_items` indexed items (the others all at `fill`), and the z-score of
        those others; all 0 when the scores are flat (nothing singled out, e.g. a silent query)."""
        values = list(self.scores.values())
        rest = max(n_items - len(values), 0)
        n = max(len(values) + rest, 1)
        mean = (sum(values) + rest * self.fill) / n
        std = ((sum((v - mean) ** 2 for v in values) + rest * (self.fill - mean) ** 2) / n) ** 0.5
        if std <= 1e-6:
            return {item: 0.0 for item in self.scores}, 0.0
        return {item: (v - mean) / std for item, v in self.scores.items()}, (self.fill - mean) / std


def modality_scores(db: EmbeddingIndex, queries: EmbeddingIndex, modality: str, exclude_self: bool,
                    device) -> list[tuple[str, ItemScores]]:
    """Per query item: every candidate item's score, the mean over query segments of its best row's cosine."""
    k = ROWS_PER_SEGMENT
    if exclude_self:  # the item's own rows must not crowd the others out of the candidate list
        k += max(len(rows) for _, rows in query_groups(db.rows))
    scores, found = chunked_topk(gallery_vectors(queries, modality), gallery_vectors(db, modality),
                                 min(k, len(db)), device=device)
    out = []
    for item_id, rows in query_groups(queries.rows):
        best: dict[str, list] = {}  # db item → per query segment (score, offset) of its best row
        fills = [float(scores[r, -1]) for r in rows]
        for j, r in enumerate(rows):
            seen: set[str] = set()
            for score, g in zip(scores[r].tolist(), found[r].tolist()):
                target = db.rows[g]["item_id"]
                if target in seen or (exclude_self and target == item_id):
                    continue
                seen.add(target)  # rows come best first: the first one of an item is its best
                best.setdefault(target, [None] * len(rows))[j] = (score, db.rows[g]["start_s"] - queries.rows[r]["start_s"])
        table = ItemScores({}, {}, sum(fills) / len(fills))
        for target, per_segment in best.items():
            table.scores[target] = sum(p[0] if p else f for p, f in zip(per_segment, fills)) / len(rows)
            table.offsets[target] = statistics.median(p[1] for p in per_segment if p)
        out.append((item_id, table))
    return out


def rank_items(db: EmbeddingIndex, queries: EmbeddingIndex, kind: str, top: int | None = 5,
               exclude_self: bool = False, device=None, centre: dict | None = None) -> list[tuple[str, list[ItemMatch]]]:
    """For each query item (consecutive query rows with one item id): the `top` indexed items (None: every
    candidate), best first. Both sides are centred on `centre` (default: the indexed collection's).

    `combined` ranks by the sum of the video and audio z-scores of each item among all indexed items, so a
    modality whose scores do not single anything out (a silent or noise-drowned track, a cropped picture)
    weighs little, while the reported score stays an absolute similarity: the mean of the two cosines (video
    alone for a silent query)."""
    if kind not in KINDS:
        raise UsageError(f"--kind {kind}: choose video, audio or combined")
    centre = centre or db.meta["centre"]
    db, queries = centred(db, centre), centred(whole_frame_rows(queries), centre)
    paths = {row["item_id"]: row["path"] for row in db.rows}
    if kind != "combined":
        out = []
        for item_id, table in modality_scores(db, queries, kind, exclude_self, device):
            ranked = sorted(table.scores, key=lambda t: -table.scores[t])[:top]
            out.append((item_id, [ItemMatch(t, paths[t], round(table.scores[t], 6), round(table.offsets[t], 3))
                                  for t in ranked]))
        return out
    n_items = len(paths) - (1 if exclude_self else 0)
    heard = {}
    for row in queries.rows:
        heard[row["item_id"]] = heard.get(row["item_id"], False) or bool(row.get("audible", True))
    video = modality_scores(db, queries, "video", exclude_self, device)
    audio = modality_scores(db, queries, "audio", exclude_self, device)
    out = []
    for (item_id, v), (_, a) in zip(video, audio):
        (zv, zv_rest), (za, za_rest) = v.standardised(n_items), a.standardised(n_items)
        candidates = set(v.scores) | set(a.scores)
        fused = {t: zv.get(t, zv_rest) + za.get(t, za_rest) for t in candidates}
        ranked = sorted(candidates, key=lambda t: -fused[t])[:top]
        matches = []
        for t in ranked:
            score = (v.get(t) + a.get(t)) / 2 if heard[item_id] else v.get(t)
            offset = v.offsets.get(t, a.offsets.get(t, 0.0))
            matches.append(ItemMatch(t, paths[t], round(score, 6), round(offset, 3)))
        out.append((item_id, matches))
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
