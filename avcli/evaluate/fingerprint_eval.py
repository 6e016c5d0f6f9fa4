"""`fingerprint eval`: exact-instance Recall@1 of corrupted copies against a database of clean clips.

1. References: clips of `clip_s` seconds cut back to back from each source (at most `max_clips` per source;
   a source shorter than a clip is one reference), re-encoded near-losslessly at short side ≤ 360, 25 fps,
   mono 32 kHz, so that one long file gives several distinct database items.
   References showing the same footage as an earlier one (the same clip shipped in two containers: their
   thumbnails differ by less than DUPLICATE_LEVEL grey levels on average) are dropped and listed, since no
   fingerprint can tell which of two identical references a copy came from.
2. The database: a fingerprint index of the references.
3. Queries: every reference under every corruption of the suite (`corruptions.py`), written as files.
4. Each query is matched (video, audio, combined embeddings and the dHash baseline); a hit is the query's own
   reference ranked first. Audio-only recall counts only queries whose reference has sound. The offset of a
   combined hit is right when it is within one segment of the corruption's true offset.
5. Calibration: the threshold that best separates each query's score for its own reference from its best
   score for any other reference (combined), written beside the index as calibration.json.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF

from avcli.evaluate.corruptions import CORRUPTIONS, SUITE_VERSION, TRIM_S, corrupt_file, expected_offset_s, read_clip, write_clip
from avcli.evaluate.fingerprint import (
    CALIBRATION_JSON, KINDS, best_threshold, build_fingerprint_index, embed_queries, rank_items,
)
from avcli.evaluate.perceptual_hash import dhash_video, signed
from avcli.evaluate.sources import MediaSource, media_source
from avcli.evaluate.topk import chunked_topk
from avcli.log import get_logger
from avcli.media.clip_reader import ClipReader

log = get_logger("fingerprint")

REFERENCE_FPS, REFERENCE_RATE, REFERENCE_SHORT_SIDE = 25.0, 32000, 360
DUPLICATE_LEVEL = 3.0  # mean absolute difference of 32×32 grey thumbnails (0-255) below which footage is the same


class WrittenFiles:
    """What each file of a work folder was made from (`made.json`): a file whose recorded recipe equals the one
    asked for is reused instead of written again, so that re-running `fingerprint eval` with the same --work
    skips cutting and corrupting (the slow part) and only embeds and matches."""

    NAME = "made.json"

    def __init__(self, folder: Path):
        self.path = folder / self.NAME
        self.entries = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def fresh(self, path: Path, recipe: dict) -> bool:
        return path.is_file() and self.entries.get(path.name) == recipe

    def record(self, path: Path, recipe: dict) -> None:
        self.entries[path.name] = recipe

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.entries, indent=1, sort_keys=True))


def _file_stamp(path: str) -> dict:
    stat = Path(path).stat()
    return {"file": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cut_references(sources: list[MediaSource], out: Path, clip_s: float, max_clips: int) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    made = WrittenFiles(out)
    refs = []
    for src in sources:
        count = max(1, min(max_clips, int(src.duration_s // clip_s)))
        for k in range(count):
            start, seconds = k * clip_s, min(clip_s, src.duration_s)
            path = out / f"{Path(src.path).stem}-{k:02d}.mp4"
            recipe = {"source": _file_stamp(src.source), "start_s": start, "seconds": seconds,
                      "fps": REFERENCE_FPS, "rate": REFERENCE_RATE, "short_side": REFERENCE_SHORT_SIDE}
            if not made.fresh(path, recipe):
                clip = read_clip(src.source, start, seconds, REFERENCE_FPS, REFERENCE_RATE, REFERENCE_SHORT_SIDE)
                write_clip(clip, path)
                made.record(path, recipe)
            refs.append({"path": str(path), "source": src.path, "start_s": start, "seconds": seconds,
                         "has_audio": src.audio_stream is not None})
    made.save()
    (out / "references.json").write_text(json.dumps(refs, indent=1))
    return refs


def thumbnails(path: str, seconds: float, count: int = 8) -> torch.Tensor:
    """count×32×32 grey levels of evenly spaced frames."""
    times = [seconds * (k + 0.5) / count for k in range(count)]
    with ClipReader(path) as reader:
        frames = torch.cat(reader.read_video_windows([(t, 1, 1.0) for t in times], short_side=64))
    grey = TF.rgb_to_grayscale(frames.permute(0, 3, 1, 2).float())
    return TF.resize(grey, [32, 32], antialias=True)[:, 0]


def drop_duplicate_footage(refs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(kept references, [{dropped, same_as}]): the first of each group of references showing the same footage."""
    kept, dropped, thumbs = [], [], []
    for ref in refs:
        mine = thumbnails(ref["path"], ref["seconds"])
        twin = next((k for k, t in zip(kept, thumbs) if float((t - mine).abs().mean()) < DUPLICATE_LEVEL), None)
        if twin is None:
            kept.append(ref)
            thumbs.append(mine)
        else:
            dropped.append({"dropped": ref["path"], "same_as": twin["path"]})
    return kept, dropped


def make_queries(refs: list[dict], out: Path, corruptions: list[str], segment_s: float, seed: int) -> list[dict]:
    queries = []
    made = {}
    for ref in refs:
        clean = None  # decoded only when one of its corrupted copies has to be written
        for name in corruptions:
            if name == "trim" and ref["seconds"] < TRIM_S + segment_s:
                continue  # nothing of a segment would be left
            folder = out / name
            made.setdefault(name, WrittenFiles(folder))
            path = folder / Path(ref["path"]).name
            file_seed = seed + zlib.crc32(f"{name}/{path.name}".encode())
            recipe = {"reference": _file_stamp(ref["path"]), "corruption": name, "seed": file_seed,
                      "suite": SUITE_VERSION}
            if not made[name].fresh(path, recipe):
                folder.mkdir(parents=True, exist_ok=True)
                if clean is None:
                    clean = read_clip(ref["path"], 0.0, ref["seconds"], REFERENCE_FPS, REFERENCE_RATE)
                corrupt_file(clean, name, path, file_seed)
                made[name].record(path, recipe)
            queries.append({"path": str(path), "corruption": name, "reference": ref["path"],
                            "expected_offset_s": expected_offset_s(name)})
    for files in made.values():
        files.save()
    return queries


def evaluate_fingerprints(encoders, sources, work: Path, device, clip_s: float = 3.0, max_clips: int = 4,
                          segment_s: float = 1.0, corruptions: list[str] | None = None, seed: int = 0) -> dict:
    corruptions = corruptions or list(CORRUPTIONS)
    log.info("cutting reference clips into %s", work / "references")
    refs, duplicates = drop_duplicate_footage(cut_references(sources, work / "references", clip_s, max_clips))
    for d in duplicates:
        log.warning("%s: left out, the same footage as %s", d["dropped"], d["same_as"])
    ref_sources = [media_source(r["path"]) for r in refs]
    log.info("indexing %d references", len(refs))
    db = build_fingerprint_index(encoders, ref_sources, segment_s, device)
    db.save(work / "index")
    log.info("writing %d corruptions of each reference", len(corruptions))
    queries = make_queries(refs, work / "queries", corruptions, segment_s, seed)
    query_sources = [media_source(q["path"]) for q in queries]
    embedded = embed_queries(encoders, query_sources, db.meta, device)
    embedded.save(work / "query-index")  # with queries.json: enough to re-score without decoding again
    (work / "queries" / "queries.json").write_text(json.dumps(
        [dict(q, item_id=s.item_id) for q, s in zip(queries, query_sources)], indent=1))
    ref_id = {r["path"]: s.item_id for r, s in zip(refs, ref_sources)}
    audible_ref = {row["item_id"] for row in db.rows if row["audible"]}

    ranked = {kind: dict(rank_items(db, embedded, kind, top=len(refs), device=device)) for kind in KINDS}
    dhash_hits = _dhash_hits(ref_sources, query_sources, [ref_id[q["reference"]] for q in queries])

    records = []
    for q, src, dhash_hit in zip(queries, query_sources, dhash_hits):
        truth = ref_id[q["reference"]]
        record = {"corruption": q["corruption"], "dhash": dhash_hit, "audible": truth in audible_ref}
        for kind in KINDS:
            matches = ranked[kind].get(src.item_id, [])
            record[kind] = bool(matches) and matches[0].item_id == truth
            if kind == "combined":
                mine = [m for m in matches if m.item_id == truth]
                others = [m.score for m in matches if m.item_id != truth]
                # absent from the candidates: below every candidate, so the lowest one bounds it
                record["positive"] = mine[0].score if mine else (matches[-1].score if matches else None)
                record["negative"] = max(others) if others else None
                if record[kind]:
                    record["offset_error_s"] = abs(matches[0].offset_s - q["expected_offset_s"])
        records.append(record)

    calibration = best_threshold([r["positive"] for r in records if r["positive"] is not None],
                                 [r["negative"] for r in records if r["negative"] is not None])
    calibration.update(kind="combined", method="fingerprint eval")
    (work / "index" / CALIBRATION_JSON).write_text(json.dumps(calibration, indent=1))
    rows = [_summary(name, [r for r in records if r["corruption"] == name], segment_s) for name in corruptions]
    rows.append(_summary("overall", records, segment_s))
    return {"rows": rows, "calibration": calibration, "references": len(refs), "queries": len(queries),
            "index": str(work / "index"), "duplicates_dropped": duplicates}


def _dhash_hits(db_sources, query_sources, truths) -> list[bool]:
    db = torch.stack([dhash_video(s.source, s.duration_s) for s in db_sources])
    qs = torch.stack([dhash_video(s.source, s.duration_s) for s in query_sources])
    _, found = chunked_topk(signed(qs), signed(db), 1)
    return [db_sources[int(i)].item_id == t for i, t in zip(found[:, 0], truths)]


def _summary(name: str, records: list[dict], segment_s: float) -> dict:
    def rate(values):
        return round(sum(values) / len(values), 4) if values else None

    heard = [r for r in records if r["audible"]]
    errors = [r["offset_error_s"] for r in records if "offset_error_s" in r]
    return {
        "corruption": name,
        "queries": len(records),
        "video_r1": rate([r["video"] for r in records]),
        "audio_r1": rate([r["audio"] for r in heard]),
        "audio_queries": len(heard),
        "combined_r1": rate([r["combined"] for r in records]),
        "dhash_r1": rate([r["dhash"] for r in records]),
        "offset_within_segment": rate([e <= segment_s + 1e-6 for e in errors]),
        "offset_mean_error_s": round(sum(errors) / len(errors), 3) if errors else None,
    }
