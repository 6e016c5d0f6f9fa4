"""The embedding index: chunked top-k equals a full matrix product + topk, shards round-trip, faiss agrees."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from avcli.errors import UsageError
from avcli.evaluate.embedding_index import EmbeddingIndex, combine, iter_shards, read_side_file
from avcli.evaluate.topk import chunk_rows_for, chunked_topk, faiss_available, faiss_topk


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def _reference(queries, gallery, k):
    top = (queries @ gallery.T).topk(min(k, gallery.shape[0]), dim=1)
    return top.values, top.indices


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 1000, 5000])
@pytest.mark.parametrize("query_batch", [3, 1024])
def test_chunked_topk_equals_full_matrix_product(chunk_rows, query_batch):
    queries, gallery = _unit(37, 24, 0), _unit(1000, 24, 1)
    scores, found = chunked_topk(queries, gallery, 10, chunk_rows=chunk_rows, query_batch=query_batch)
    ref_scores, ref_found = _reference(queries, gallery, 10)
    assert torch.equal(found, ref_found)
    assert torch.allclose(scores, ref_scores, atol=1e-6)


def test_k_beyond_the_gallery_returns_every_row_once():
    queries, gallery = _unit(4, 8, 2), _unit(5, 8, 3)
    scores, found = chunked_topk(queries, gallery, 50, chunk_rows=2)
    assert found.shape == (4, 5)
    assert all(sorted(row.tolist()) == list(range(5)) for row in found)
    assert torch.all(scores[:, :-1] >= scores[:, 1:])


def test_gallery_given_as_blocks_is_searched_like_one_tensor():
    queries, gallery = _unit(9, 16, 4), _unit(300, 16, 5)
    blocks = [gallery[:100], gallery[100:130], gallery[130:]]
    _, found = chunked_topk(queries, blocks, 5, chunk_rows=64)
    assert torch.equal(found, _reference(queries, gallery, 5)[1])


def test_chunk_size_follows_the_memory_budget():
    assert chunk_rows_for(1000, score_bytes=4 * 1000 * 256) == 256
    assert chunk_rows_for(10**9, score_bytes=16) == 1


def test_bad_k_is_a_usage_error():
    with pytest.raises(UsageError):
        chunked_topk(_unit(2, 4, 0), _unit(3, 4, 1), 0)


def test_index_round_trips_through_shards_and_streams_shard_by_shard(tmp_path):
    vectors = {"video": _unit(25, 8, 6), "audio": _unit(25, 6, 7)}
    rows = [{"item_id": f"v{i // 5}", "path": f"/x/v{i // 5}.mp4", "start_s": float(i % 5), "end_s": float(i % 5 + 1),
             "audible": i % 3 != 0} for i in range(25)]
    EmbeddingIndex(vectors, rows, {"level": "segment"}).save(tmp_path / "idx", shard_rows=10)
    doc = read_side_file(tmp_path / "idx")
    assert [s["rows"] for s in doc["shards"]] == [10, 10, 5]
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "index.json", "shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"]
    loaded = EmbeddingIndex.load(tmp_path / "idx")
    assert loaded.rows == rows and loaded.meta == {"level": "segment"}
    assert torch.equal(loaded.vectors["video"], vectors["video"]) and torch.equal(loaded.vectors["audio"], vectors["audio"])
    queries = _unit(4, 8, 8)
    _, streamed = chunked_topk(queries, iter_shards(tmp_path / "idx", "video"), 3)
    assert torch.equal(streamed, _reference(queries, vectors["video"], 3)[1])


def test_loading_something_else_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not an embedding index"):
        EmbeddingIndex.load(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(UsageError, match="rebuild"):
        EmbeddingIndex.load(tmp_path)


def test_combined_inner_product_is_the_mean_of_the_modality_cosines():
    v, a = _unit(6, 8, 9), _unit(6, 5, 10)
    heard = torch.tensor([True, True, True, False, True, True])
    c = combine(v, a, heard)
    expected = ((v @ v.T) + (a * heard[:, None]) @ (a * heard[:, None]).T) / 2
    assert torch.allclose(c @ c.T, expected, atol=1e-6)
    assert torch.allclose(c[:3].norm(dim=1), torch.ones(3))


@pytest.mark.skipif(not faiss_available(), reason="faiss (the optional extra) is not installed")
def test_faiss_gives_the_same_neighbours():
    queries, gallery = _unit(50, 32, 11), _unit(2000, 32, 12)
    f_scores, f_found = faiss_topk(queries, gallery, 10)
    scores, found = chunked_topk(queries, gallery, 10, chunk_rows=300)
    assert torch.equal(f_found, found)
    assert torch.allclose(f_scores, scores, atol=1e-5)
