"""An embedding index on disk: rows of embeddings (one per video, or one per segment of a video) with what each
row is, as safetensors shards plus a JSON side file.

    IDX/index.json               {"format": 1, "meta": {...}, "rows": [{item_id, path, start_s, end_s, ...}],
                                  "shards": [{"file": "shard-00000.safetensors", "rows": N}, ...]}
    IDX/shard-00000.safetensors  {"video": N×Dv float32, "audio": N×Da float32} (the modalities indexed)

`meta` records how the rows were made (level, segment length, feature space, checkpoint, recipe hash, clip
settings), so a query is embedded the same way and an index made by another model is refused. Shards keep a
file small enough to read at once, and let `iter_shards` stream a collection larger than memory through
`chunked_topk` one shard at a time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from avcli.errors import UsageError

INDEX_JSON = "index.json"
FORMAT = 1
MODALITIES = ("video", "audio")


@dataclass
class EmbeddingIndex:
    vectors: dict[str, torch.Tensor]  # modality → N×D float32, rows L2-normalised
    rows: list[dict]  # per row: item_id, path, start_s, end_s, audible (+ label where known)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for name, tensor in self.vectors.items():
            if tensor.shape[0] != len(self.rows):
                raise ValueError(f"{name}: {tensor.shape[0]} vectors for {len(self.rows)} rows")

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def modalities(self) -> list[str]:
        return [m for m in MODALITIES if m in self.vectors]

    def embeddings(self, kind: str) -> torch.Tensor:
        """Rows of `kind`: a modality, or "combined" (`combine` of video and audio)."""
        if kind == "combined":
            return combine(self.vectors["video"], self.vectors["audio"], self.audible())
        if kind not in self.vectors:
            raise UsageError(f"this index has no {kind} embeddings (it has {', '.join(self.modalities)})")
        return self.vectors[kind]

    def audible(self) -> torch.Tensor:
        return torch.tensor([bool(r.get("audible", True)) for r in self.rows], dtype=torch.bool)

    def save(self, out: str | Path, shard_rows: int = 100_000) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        shards = []
        for number, start in enumerate(range(0, max(len(self.rows), 1), shard_rows)):
            name = f"shard-{number:05d}.safetensors"
            part = {m: v[start : start + shard_rows].contiguous() for m, v in self.vectors.items()}
            _atomic(out / name, lambda tmp, part=part: save_file(part, str(tmp)))
            shards.append({"file": name, "rows": min(shard_rows, len(self.rows) - start)})
        doc = {"format": FORMAT, "meta": self.meta, "rows": self.rows, "shards": shards}
        # the side file is written last: an index whose index.json exists is complete
        _atomic(out / INDEX_JSON, lambda tmp: tmp.write_text(json.dumps(doc, indent=1)))
        return out

    @classmethod
    def load(cls, path: str | Path) -> "EmbeddingIndex":
        doc = read_side_file(path)
        parts: dict[str, list[torch.Tensor]] = {}
        for shard in iter_shard_dicts(path, doc):
            for name, tensor in shard.items():
                parts.setdefault(name, []).append(tensor)
        return cls({n: torch.cat(t) for n, t in parts.items()}, doc["rows"], doc["meta"])


def combine(video: torch.Tensor, audio: torch.Tensor, audible: torch.Tensor) -> torch.Tensor:
    """[v, a]/√2 of L2-normalised parts, with a = 0 where the row has no sound, so that the inner product of two
    combined rows is the mean of their video and audio cosines (and a silent row matches on video alone)."""
    a = F.normalize(audio, dim=1) * audible.to(audio.dtype).unsqueeze(1)
    return torch.cat([F.normalize(video, dim=1), a], dim=1) / 2**0.5


def is_index(path: str | Path) -> bool:
    return (Path(path) / INDEX_JSON).is_file()


def read_side_file(path: str | Path) -> dict:
    side = Path(path) / INDEX_JSON
    if not side.is_file():
        raise UsageError(f"{path}: not an embedding index (no {INDEX_JSON}); make one with `avcli fingerprint index`")
    doc = json.loads(side.read_text())
    if doc.get("format") != FORMAT:
        raise UsageError(f"{side}: index format {doc.get('format')} is not {FORMAT}; rebuild the index")
    return doc


def iter_shard_dicts(path: str | Path, doc: dict | None = None) -> Iterator[dict[str, torch.Tensor]]:
    doc = doc or read_side_file(path)
    for shard in doc["shards"]:
        with safe_open(str(Path(path) / shard["file"]), framework="pt") as fh:
            yield {name: fh.get_tensor(name) for name in fh.keys()}


def iter_shards(path: str | Path, modality: str) -> Iterator[torch.Tensor]:
    """One modality's rows shard by shard, reading only that shard's tensor (for search beyond memory)."""
    doc = read_side_file(path)
    for shard in doc["shards"]:
        with safe_open(str(Path(path) / shard["file"]), framework="pt") as fh:
            if modality not in fh.keys():
                raise UsageError(f"{path}: the index has no {modality} embeddings")
            yield fh.get_tensor(modality)


def _atomic(target: Path, write) -> None:
    tmp = target.with_name(target.name + ".tmp")
    write(tmp)
    os.replace(tmp, target)
