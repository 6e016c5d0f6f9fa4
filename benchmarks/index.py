"""Exact top-k search over a large embedding collection on CPU: avcli's chunked search against a plain full
`torch.mm` + `topk` reference, in the same run, on the same data.

    python benchmarks/index.py                    # 1,000,000 × 512 gallery, 1,000 queries, k = 10
    python benchmarks/index.py --n 100000 --faiss # smaller, plus faiss's IndexFlatIP (the optional extra)

Prints one JSON line: wall time and peak extra resident memory (RSS sampled every 2 ms above the level before
the call) of each method, their ratios, and whether the results are the same. The gallery itself (n × d float32)
is resident before any search starts and is not counted. The reference materialises the whole
queries × gallery score matrix (4 GB at the default size); the chunked search holds one queries × chunk block.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avcli.evaluate.topk import chunked_topk, faiss_available, faiss_topk  # noqa: E402

MIB = 2**20


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


class PeakRss:
    """Highest RSS above the starting level while the block runs (a sampling thread)."""

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.extra_mib = (self.peak - self.base) / MIB


def timed(fn):
    with PeakRss() as mem:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return result, seconds, mem.extra_mib


def reference_topk(queries, gallery, k):
    scores = torch.mm(queries, gallery.T)  # the whole Q × N score matrix
    top = scores.topk(k, dim=1)
    return top.values, top.indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--chunk-rows", type=int, default=32768)
    parser.add_argument("--faiss", action="store_true", help="also time faiss IndexFlatIP (if installed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(args.seed)
    gallery = torch.empty(args.n, args.dim)
    for start in range(0, args.n, 100_000):  # in blocks, so that making the data has no large temporaries
        block = gallery[start : start + 100_000]
        block.copy_(F.normalize(torch.randn(block.shape, generator=gen), dim=1))
    queries = F.normalize(torch.randn(args.queries, args.dim, generator=gen), dim=1)

    (c_scores, c_index), chunked_s, chunked_mib = timed(
        lambda: chunked_topk(queries, gallery, args.k, chunk_rows=args.chunk_rows, query_batch=args.queries))
    (r_scores, r_index), reference_s, reference_mib = timed(lambda: reference_topk(queries, gallery, args.k))
    same = torch.equal(c_index, r_index)
    record = {
        "benchmark": "index_search",
        "gallery": args.n, "dim": args.dim, "queries": args.queries, "k": args.k,
        "threads": torch.get_num_threads(),
        "chunk_rows": args.chunk_rows,
        "score_block_mib": round(args.queries * args.chunk_rows * 4 / MIB, 1),
        "chunked_s": round(chunked_s, 2), "chunked_peak_extra_mib": round(chunked_mib, 1),
        "reference_s": round(reference_s, 2), "reference_peak_extra_mib": round(reference_mib, 1),
        "reference_score_matrix_mib": round(args.queries * args.n * 4 / MIB, 1),
        "time_ratio_chunked_over_reference": round(chunked_s / reference_s, 3),
        "memory_ratio_chunked_over_reference": round(chunked_mib / max(reference_mib, 1e-9), 4),
        "same_indices": same,
        "same_indices_fraction": round(float((c_index == r_index).float().mean()), 6),
        "max_score_difference": float((c_scores - r_scores).abs().max()),
    }
    del r_scores, r_index
    if args.faiss and faiss_available():
        (f_scores, f_index), faiss_s, faiss_mib = timed(lambda: faiss_topk(queries, gallery, args.k))
        record.update(faiss_s=round(faiss_s, 2), faiss_peak_extra_mib=round(faiss_mib, 1),
                      faiss_same_indices_fraction=round(float((f_index == c_index).float().mean()), 6))
    print(json.dumps(record))


if __name__ == "__main__":
    main()
