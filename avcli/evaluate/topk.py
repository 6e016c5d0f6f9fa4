"""Exact top-k cosine search by chunked matrix products, with memory bounded by the chunk, not the collection.

The gallery is consumed block by block (a tensor in memory, or shards read one at a time from disk); for each
block the scores of a batch of queries are computed with one `mm`, reduced to that block's top-k and merged
into a running top-k. Peak working memory is about `query_batch × chunk_rows` scores plus `query_batch × 2k`,
whatever the gallery size. Rows are expected L2-normalised, so the inner product is the cosine similarity.

`faiss_topk` gives the same answer through faiss's exact inner-product index (the optional `faiss` extra),
for installations that already keep their collections in faiss.
"""

from __future__ import annotations

import importlib.util
from typing import Iterable, Iterator

import torch

from avcli.errors import UsageError

DEFAULT_SCORE_BYTES = 256 * 2**20  # scores of one query batch × gallery chunk: 256 MiB


def chunk_rows_for(query_batch: int, score_bytes: int = DEFAULT_SCORE_BYTES) -> int:
    """Gallery rows per chunk such that a float32 score block of `query_batch` rows fits in `score_bytes`."""
    return max(1, score_bytes // (4 * max(1, query_batch)))


def _blocks(gallery: torch.Tensor | Iterable[torch.Tensor], chunk_rows: int) -> Iterator[torch.Tensor]:
    """Gallery blocks of at most `chunk_rows` rows, in order (an iterable's own blocks are split further)."""
    parts = [gallery] if isinstance(gallery, torch.Tensor) else gallery
    for part in parts:
        for start in range(0, part.shape[0], chunk_rows):
            yield part[start : start + chunk_rows]


@torch.no_grad()
def chunked_topk(
    queries: torch.Tensor,
    gallery: torch.Tensor | Iterable[torch.Tensor],
    k: int,
    chunk_rows: int | None = None,
    query_batch: int = 1024,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and gallery row indices (Q×k' each, best first, k' = min(k, gallery rows)) of the top-k inner
    products of each query against the gallery, a tensor or an iterable of row blocks (e.g. shards on disk;
    an iterable is consumed once per query batch, so pass a re-iterable one when Q > query_batch)."""
    if k < 1:
        raise UsageError(f"top-k must be at least 1, got {k}")
    device = torch.device(device) if device is not None else queries.device
    chunk_rows = chunk_rows or chunk_rows_for(min(query_batch, max(1, queries.shape[0])))
    out_scores, out_index = [], []
    for q0 in range(0, queries.shape[0], query_batch):
        q = queries[q0 : q0 + query_batch].to(device, torch.float32)
        best_s = torch.empty(q.shape[0], 0, device=device)
        best_i = torch.empty(q.shape[0], 0, dtype=torch.long, device=device)
        offset = 0
        for block in _blocks(gallery, chunk_rows):
            scores = q @ block.to(device, torch.float32).T
            top = scores.topk(min(k, scores.shape[1]), dim=1)
            merged_s = torch.cat([best_s, top.values], dim=1)
            merged_i = torch.cat([best_i, top.indices + offset], dim=1)
            keep = merged_s.topk(min(k, merged_s.shape[1]), dim=1)
            best_s, best_i = keep.values, merged_i.gather(1, keep.indices)
            offset += block.shape[0]
            del scores
        out_scores.append(best_s.cpu())
        out_index.append(best_i.cpu())
    if not out_scores:
        return torch.empty(0, 0), torch.empty(0, 0, dtype=torch.long)
    return torch.cat(out_scores), torch.cat(out_index)


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def faiss_topk(queries: torch.Tensor, gallery: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same search through faiss's exact inner-product index (IndexFlatIP)."""
    try:
        import faiss
    except ImportError:
        raise UsageError("--backend faiss needs the faiss extra; install it with pip install 'avcli[faiss]'") from None
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery.detach().cpu().float().contiguous().numpy())
    scores, found = index.search(queries.detach().cpu().float().contiguous().numpy(), min(k, gallery.shape[0]))
    return torch.from_numpy(scores), torch.from_numpy(found).long()


def search(
    queries: torch.Tensor, gallery: torch.Tensor, k: int, backend: str = "torch", device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k by the chosen backend ("torch": chunked matrix products on `device`; "faiss": IndexFlatIP)."""
    if backend == "faiss":
        return faiss_topk(queries, gallery, k)
    if backend != "torch":
        raise UsageError(f"--backend {backend}: choose torch or faiss")
    return chunked_topk(queries, gallery, k, device=device)
