"""The retrieval protocol (METHODS.md §6): each test video queries the train videos by cosine similarity; a hit
at k when one of the top-k train videos has the query's class; Recall@k for k in 1, 5, 10, 20, 50.

Within a modality the features are the pooled encoder features; across modalities (audio queries, video
gallery or back) they are the projection heads' joint space, the only place the two are comparable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avcli.errors import UsageError
from avcli.evaluate.embedding_index import EmbeddingIndex, combine
from avcli.evaluate.fingerprint import centred, gallery_vectors
from avcli.evaluate.segments import SegmentOptions, embed_segments, index_meta
from avcli.evaluate.sources import media_source
from avcli.evaluate.topk import search
from avcli.evaluate.video_embeddings import embed_videos
from avcli.log import get_logger
from avcli.tasks.base import TaskVideo

log = get_logger("retrieve")

KS = (1, 5, 10, 20, 50)


def recall_at_k(query_labels: torch.Tensor, neighbour_labels: torch.Tensor, ks=KS) -> dict[str, float]:
    """Percent of queries with their class among the first k neighbours (Q×K labels of ranked neighbours)."""
    hits = neighbour_labels == query_labels.unsqueeze(1)
    out = {}
    for k in ks:
        out[f"R@{k}"] = round(100.0 * hits[:, :k].any(dim=1).float().mean().item(), 2)
    return out


def retrieval_recall(queries: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor,
                     gallery_labels: torch.Tensor, ks=KS, backend: str = "torch", device=None) -> dict[str, float]:
    _, found = search(queries, gallery, max(ks), backend=backend, device=device)
    return recall_at_k(query_labels, gallery_labels[found], ks)


def run_retrieval(encoders, task, pairs: list[tuple[str, str]], clips: int, device, ks=KS, backend: str = "torch",
                  workers: int = 0, save_index=None) -> list[dict]:
    """One result per (query modality, gallery modality) pair: test videos query the train videos."""
    train, test = task.split("train"), task.split("test")
    space = "joint" if any(q != g for q, g in pairs) else "pooled"
    modalities = sorted({m for pair in pairs for m in pair})
    log.info("embedding %d train and %d test videos (%s space, %d clips each)", len(train), len(test), space, clips)
    gallery, gallery_heard = embed_videos(encoders, train, clips, device, modalities, space, workers=workers)
    queries, _ = embed_videos(encoders, test, clips, device, modalities, space, workers=workers)
    g_labels = torch.tensor([v.label for v in train])
    q_labels = torch.tensor([v.label for v in test])
    results = []
    for q_mod, g_mod in pairs:
        recall = retrieval_recall(queries[q_mod], q_labels, gallery[g_mod], g_labels, ks, backend, device)
        results.append({"task": task.name, "query": q_mod, "gallery": g_mod, "space": space, "checkpoint":
                        encoders.checkpoint, "queries": len(test), "gallery_size": len(train), "clips": clips,
                        **recall})
    if save_index is not None:
        rows = [{"item_id": f"{task.name}/train/{i}", "path": v.path, "start_s": 0.0, "end_s": v.duration_s,
                 "audible": bool(h), "label": task.classes[v.label]} for i, (v, h) in enumerate(zip(train, gallery_heard))]
        meta = index_meta(encoders, "video", space, clips=clips)
        EmbeddingIndex(gallery, rows, meta).save(save_index)
    return results


def query_by_example(index: EmbeddingIndex, encoders, path: str, kind: str, top: int, device,
                     backend: str = "torch") -> list[dict]:
    """The `top` index rows nearest to a query file, embedded the way the index's rows were (video level: mean of
    evenly spaced clips; segment level: mean of its segments, centred like the index)."""
    meta = index.meta
    source = media_source(path)
    if source is None:
        raise UsageError(f"{path}: not a usable video file (see the warning above); pass a video with a video stream")
    modalities = index.modalities
    if meta["level"] == "segment":
        segments = embed_segments(encoders, [source], meta["segment_s"], device, meta["space"], modalities,
                                  options=SegmentOptions.from_meta(meta))
        if "centre" in meta:
            segments = centred(segments, meta["centre"])
        vectors = {m: F.normalize(v.mean(dim=0, keepdim=True), dim=1) for m, v in segments.vectors.items()}
        heard = segments.audible().any().reshape(1)
    else:
        video = TaskVideo(source.source, -1, "query", source.duration_s)
        vectors, heard = embed_videos(encoders, [video], meta["clips_per_video"], device, modalities, meta["space"])
    if kind == "combined":
        query = combine(vectors["video"], vectors["audio"], heard) * (2 / (1 + heard.float().unsqueeze(1)))
    else:
        if kind not in vectors:
            raise UsageError(f"--modality {kind}: the index has {', '.join(modalities)} embeddings")
        query = vectors[kind]
    gallery = centred(index, meta["centre"]) if "centre" in meta else index
    scores, found = search(query, gallery_vectors(gallery, kind), top, backend=backend, device=device)
    out = []
    for rank, (score, row) in enumerate(zip(scores[0].tolist(), found[0].tolist()), 1):
        item = index.rows[row]
        out.append({"query": path, "rank": rank, "item_id": item["item_id"], "path": item["path"],
                    "start_s": item["start_s"], "score": round(score, 6)})
        if "label" in item:
            out[-1]["label"] = item["label"]
    return out
