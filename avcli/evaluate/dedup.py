"""Near-duplicate pairs within one fingerprinted collection, or across two (train/test leakage).

Every item is matched against the other collection (or its own, itself excluded) with the fingerprint's
item score; a pair is reported when the score reaches the threshold in either direction (a short clip
contained in a long video scores high only as the query). Both collections are compared in the frame of
the first one's centre.
"""

from __future__ import annotations

from avcli.errors import UsageError
from avcli.evaluate.embedding_index import EmbeddingIndex
from avcli.evaluate.fingerprint import rank_items


def near_duplicates(a: EmbeddingIndex, b: EmbeddingIndex | None, threshold: float, device=None,
                    kind: str = "combined") -> list[dict]:
    """Pairs {a, b, score, offset_s (where b starts in a)}, highest score first; within A each pair once."""
    centre = a.meta["centre"]
    if b is not None and b.meta.get("recipe_hash") != a.meta.get("recipe_hash"):
        raise UsageError("the two collections were fingerprinted with different models; index both with one checkpoint")
    other = b if b is not None else a
    pairs: dict[tuple[str, str], dict] = {}
    paths = {r["item_id"]: r["path"] for r in a.rows} | {r["item_id"]: r["path"] for r in other.rows}

    def consider(a_id: str, b_id: str, score: float, offset: float) -> None:
        if b is None and a_id > b_id:  # within one collection: one orientation per pair
            a_id, b_id, offset = b_id, a_id, -offset
        key = (a_id, b_id)
        if score >= threshold and (key not in pairs or score > pairs[key]["score"]):
            pairs[key] = {"a": paths[a_id], "a_item_id": a_id, "b": paths[b_id], "b_item_id": b_id,
                          "score": score, "offset_s": offset}

    # B's items as queries in A: offsets are where the B item starts in the A item
    for b_id, matches in rank_items(a, other, kind, top=None, exclude_self=b is None, device=device, centre=centre):
        for m in matches:
            consider(m.item_id, b_id, m.score, m.offset_s)
    # and A's items as queries in B (a long A video containing a short B clip), offsets negated
    if b is not None:
        for a_id, matches in rank_items(b, a, kind, top=None, device=device, centre=centre):
            for m in matches:
                consider(a_id, m.item_id, m.score, -m.offset_s)
    return sorted(pairs.values(), key=lambda p: -p["score"])
