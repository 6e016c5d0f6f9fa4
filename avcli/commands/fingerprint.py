"""`avcli fingerprint index|query|eval|dedup`: robust copy detection with segment-level embeddings."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Optional

import typer

from avcli.commands.output import emit
from avcli.errors import UsageError
from avcli.log import get_logger

log = get_logger("fingerprint")

app = typer.Typer(
    name="fingerprint",
    help="Robust video fingerprinting: index a collection, query copies, evaluate under corruptions, find "
    "near-duplicates (train/test leakage).",
    no_args_is_help=True,
)

CHECKPOINT_HELP = "Run dir, checkpoints/latest, a step dir, or 'random' (with --recipe)."


def _encoders(checkpoint: str, recipe: Optional[Path]):
    from avcli.commands.probe import default_recipe
    from avcli.evaluate.encoders import load_eval_encoders

    if checkpoint == "random" and recipe is None:
        recipe = default_recipe()
    return load_eval_encoders(checkpoint, recipe)


def _device(name: str):
    from avcli.train.runtime import resolve_device

    return resolve_device(name)


def _index_or_build(src: list[str], checkpoint: Optional[str], recipe, segment_s: float, device):
    """An existing index (a folder with index.json), or a fresh index of the given files/folders/catalogs."""
    from avcli.evaluate.embedding_index import EmbeddingIndex, is_index
    from avcli.evaluate.fingerprint import build_fingerprint_index
    from avcli.evaluate.sources import collect_sources

    if len(src) == 1 and is_index(src[0]):
        return EmbeddingIndex.load(src[0])
    if checkpoint is None:
        raise UsageError(f"{' '.join(src)}: not an index; pass --checkpoint to fingerprint it first")
    return build_fingerprint_index(_encoders(checkpoint, recipe), collect_sources(src), segment_s, device)


@app.command("index", help="Fingerprint videos (files, folders, catalogs) into an index directory.")
def index_cmd(
    src: List[str] = typer.Argument(..., help="Video files, folders or catalogs."),
    checkpoint: str = typer.Option(..., "--checkpoint", help=CHECKPOINT_HELP),
    out: Path = typer.Option(..., "--out", help="Index directory to write."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Recipe for the architecture (random init)."),
    segment: float = typer.Option(1.0, "--segment", min=0.1, help="Seconds per fingerprint segment."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
) -> int:
    from avcli.evaluate.fingerprint import build_fingerprint_index
    from avcli.evaluate.sources import collect_sources

    index = build_fingerprint_index(_encoders(checkpoint, recipe), collect_sources(src), segment, _device(device))
    index.save(out)
    items = len({row["item_id"] for row in index.rows})
    emit({"index": str(out), "items": items, "segments": len(index), "segment_s": segment,
          "threshold": index.meta["calibration"]["threshold"]})
    log.info("indexed %d videos (%d segments) into %s", items, len(index), out)
    return 0


@app.command("query", help="Best match of each file in an index: item, time offset, score, same-content decision.")
def query_cmd(
    index_dir: Path = typer.Argument(..., help="Index directory (from fingerprint index)."),
    files: List[Path] = typer.Argument(..., help="Query videos."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Default: the index's own checkpoint."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Recipe for the architecture (random init)."),
    kind: str = typer.Option("combined", "--kind", help="video, audio or combined embedding."),
    top: int = typer.Option(1, "--top", min=1, help="Matches per query file."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
) -> int:
    from avcli.commands.retrieve import load_index_encoders
    from avcli.evaluate.embedding_index import EmbeddingIndex
    from avcli.evaluate.fingerprint import embed_queries, load_calibration, rank_items, same_content
    from avcli.evaluate.sources import media_source

    db = EmbeddingIndex.load(index_dir)
    if db.meta.get("level") != "segment" or "centre" not in db.meta:
        raise UsageError(f"{index_dir}: not a fingerprint index; make one with `avcli fingerprint index`")
    encoders = load_index_encoders(db.meta, checkpoint, recipe, index_dir)
    calibration = load_calibration(index_dir, db.meta)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UsageError(f"{missing[0]}: no such file; pass video files to query")
    sources = [s for s in (media_source(f) for f in files) if s is not None]
    if not sources:
        raise UsageError("none of the query files has a usable video stream")
    queries = embed_queries(encoders, sources, db.meta, _device(device))
    paths = {s.item_id: s.path for s in sources}
    for item_id, matches in rank_items(db, queries, kind, top=top):
        for rank, match in enumerate(matches, 1):
            emit({"query": paths[item_id], "rank": rank, "item_id": match.item_id, "path": match.path,
                  "offset_s": match.offset_s, "score": match.score,
                  "same_content": same_content(match.score, calibration) if kind == calibration.get("kind") else None,
                  "threshold": calibration.get("threshold"), "calibration": calibration.get("method")})
    return 0


@app.command("eval", help="Recall@1 under the corruption suite (video, audio, combined, dHash baseline).")
def eval_cmd(
    src: List[str] = typer.Argument(..., help="Source videos (files, folders, catalogs) to cut references from."),
    checkpoint: str = typer.Option(..., "--checkpoint", help=CHECKPOINT_HELP),
    work: Optional[Path] = typer.Option(None, "--work", help="Folder for references, queries and the index "
                                        "(default: a temporary folder, removed afterwards)."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Recipe for the architecture (random init)."),
    clip: float = typer.Option(3.0, "--clip", min=0.5, help="Seconds per reference clip cut from a source."),
    max_clips: int = typer.Option(4, "--max-clips", min=1, help="Reference clips at most per source."),
    segment: float = typer.Option(1.0, "--segment", min=0.1, help="Seconds per fingerprint segment."),
    corruptions: Optional[str] = typer.Option(None, "--corruptions", help="Comma-separated subset of the suite."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random corruptions."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
) -> int:
    from avcli.evaluate.corruptions import CORRUPTIONS
    from avcli.evaluate.fingerprint_eval import evaluate_fingerprints
    from avcli.evaluate.sources import collect_sources

    names = [c.strip() for c in corruptions.split(",")] if corruptions else list(CORRUPTIONS)
    unknown = [c for c in names if c not in CORRUPTIONS]
    if unknown:
        raise UsageError(f"--corruptions {unknown[0]}: unknown; choose from {', '.join(CORRUPTIONS)}")
    encoders = _encoders(checkpoint, recipe)
    sources = collect_sources(src)
    with tempfile.TemporaryDirectory(prefix="avcli-fingerprint-") as tmp:
        result = evaluate_fingerprints(encoders, sources, work or Path(tmp), _device(device), clip, max_clips,
                                       segment, names, seed)
        for row in result["rows"]:
            emit(row)
        emit({"calibration": result["calibration"], "references": result["references"],
              "queries": result["queries"], "duplicates_dropped": result["duplicates_dropped"],
              "index": result["index"] if work else None})
    overall = result["rows"][-1]
    log.info("overall Recall@1: combined %.3f, video %.3f, audio %s, dHash %.3f over %d queries",
             overall["combined_r1"], overall["video_r1"], overall["audio_r1"], overall["dhash_r1"], overall["queries"])
    return 0


@app.command("dedup", help="Near-duplicate pairs within one collection, or across two (train/test leakage).")
def dedup_cmd(
    a: str = typer.Argument(..., help="An index, or videos (a file, folder or catalog) to fingerprint."),
    b: Optional[str] = typer.Argument(None, help="A second collection: list pairs across A and B only."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP + " Needed unless A/B "
                                             "are indexes."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Recipe for the architecture (random init)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Score from which a pair is reported "
                                              "(default: A's calibrated threshold)."),
    segment: float = typer.Option(1.0, "--segment", min=0.1, help="Seconds per segment (when fingerprinting)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
) -> int:
    from avcli.evaluate.dedup import near_duplicates
    from avcli.evaluate.fingerprint import load_calibration

    dev = _device(device)
    first = _index_or_build([a], checkpoint, recipe, segment, dev)
    second = _index_or_build([b], checkpoint, recipe, segment, dev) if b is not None else None
    if threshold is None:
        threshold = load_calibration(a, first.meta).get("threshold")
    if threshold is None:
        raise UsageError(f"{a}: no calibrated threshold (a single video); pass --threshold")
    pairs = near_duplicates(first, second, threshold, dev)
    for pair in pairs:
        emit(pair)
    log.info("%d near-duplicate pair(s) at threshold %.4f", len(pairs), threshold)
    return 0


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="fingerprint")
