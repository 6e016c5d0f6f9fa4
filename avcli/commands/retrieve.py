"""`avcli retrieve`: the R@k protocol on a task (within or across modalities), or query by example on an index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from avcli.commands.output import emit
from avcli.errors import UsageError
from avcli.log import get_logger

log = get_logger("retrieve")


def _pairs(query: Optional[str], gallery: Optional[str]) -> list[tuple[str, str]]:
    for name, value in (("--query", query), ("--gallery", gallery)):
        if value not in (None, "video", "audio"):
            raise UsageError(f"{name} {value}: choose video or audio")
    if query is None and gallery is None:
        return [("video", "video"), ("audio", "audio")]
    return [(query or gallery, gallery or query)]


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        ks = ()
    if not ks or ks[0] < 1:
        raise UsageError(f"--ks {text}: give positive integers separated by commas, e.g. 1,5,10,20,50")
    return ks


def register(app: typer.Typer) -> None:
    @app.command(
        "retrieve",
        help="Nearest-neighbour retrieval: the R@k protocol on a task (test queries train; --query/--gallery for "
        "cross-modal), or query by example: avcli retrieve --index IDX query.mp4 --top 10.",
    )
    def retrieve(
        files: Optional[List[Path]] = typer.Argument(None, help="Query videos (with --index)."),
        task: Optional[str] = typer.Option(None, "--task", help="Task name for the R@k protocol (see avcli probe)."),
        index: Optional[Path] = typer.Option(None, "--index", help="An embedding index to query by example."),
        checkpoint: Optional[str] = typer.Option(
            None, "--checkpoint", help="Run dir, checkpoints/latest, a step dir, or 'random' (with --index: default "
            "the index's own checkpoint)."
        ),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="Dataset root of the task."),
        recipe: Optional[Path] = typer.Option(None, "--recipe", help="Recipe for the architecture (random init)."),
        query: Optional[str] = typer.Option(None, "--query", help="Query modality: video or audio."),
        gallery: Optional[str] = typer.Option(None, "--gallery", help="Gallery modality: video or audio."),
        clips: int = typer.Option(10, "--clips", min=1, help="Evenly spaced clips averaged per video."),
        ks: str = typer.Option("1,5,10,20,50", "--ks", help="Recall cut-offs."),
        top: int = typer.Option(10, "--top", min=1, help="Neighbours per query file (with --index)."),
        modality: Optional[str] = typer.Option(
            None, "--modality", help="With --index: video, audio or combined (default video; combined where the "
            "index is a fingerprint index)."
        ),
        save_index: Optional[Path] = typer.Option(None, "--save-index", help="Write the train split's index here."),
        backend: str = typer.Option("torch", "--backend", help="torch (chunked exact search) or faiss (exact)."),
        workers: int = typer.Option(0, "--workers", min=0, help="Data-loader workers for feature extraction."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    ) -> int:
        from avcli.commands.probe import default_recipe
        from avcli.evaluate.encoders import load_eval_encoders
        from avcli.train.runtime import resolve_device

        if (task is None) == (index is None):
            raise UsageError("give either --task NAME (the R@k protocol) or --index IDX FILE... (query by example)")
        if index is not None:
            return _query_by_example(index, files or [], checkpoint, recipe, modality, top, backend, device)
        if files:
            raise UsageError(f"{files[0]}: query files go with --index IDX, not with --task")
        if checkpoint is None:
            raise UsageError("--task needs --checkpoint (a run dir, checkpoints/latest, a step dir, or random)")
        pairs, cutoffs = _pairs(query, gallery), _ks(ks)
        if checkpoint == "random" and recipe is None:
            recipe = default_recipe()
        from avcli.evaluate.retrieval import run_retrieval
        from avcli.tasks import load_task

        encoders = load_eval_encoders(checkpoint, recipe)
        root = data_root or encoders.recipe.data.catalog
        results = run_retrieval(encoders, load_task(task, root), pairs, clips, resolve_device(device), cutoffs,
                                backend, workers, save_index)
        for result in results:
            emit(result)
            log.info("%s %s→%s R@1 %.2f%%", task, result["query"], result["gallery"], result["R@1"])
        if encoders.run_dir is not None:
            with open(encoders.run_dir / "results.jsonl", "a") as fh:
                fh.writelines(json.dumps({"verb": "retrieve", **r}) + "\n" for r in results)
        return 0


def _query_by_example(index_dir, files, checkpoint, recipe, modality, top, backend, device) -> int:
    from avcli.evaluate.embedding_index import EmbeddingIndex
    from avcli.evaluate.retrieval import query_by_example
    from avcli.train.runtime import resolve_device

    if not files:
        raise UsageError("--index needs one or more query files: avcli retrieve --index IDX query.mp4")
    index = EmbeddingIndex.load(index_dir)
    encoders = load_index_encoders(index.meta, checkpoint, recipe, index_dir)
    kind = modality or ("combined" if "centre" in index.meta and len(index.modalities) == 2 else "video")
    for path in files:
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such file; pass a video file to query with")
        for hit in query_by_example(index, encoders, str(path), kind, top, resolve_device(device), backend):
            emit(hit)
    return 0


def load_index_encoders(meta: dict, checkpoint: str | None, recipe, index_dir):
    """The encoders an index was made with (or those given, when their recipe matches the index's)."""
    from avcli.commands.probe import default_recipe
    from avcli.evaluate.encoders import load_eval_encoders

    checkpoint = checkpoint or meta["checkpoint"]
    if checkpoint == "random" and recipe is None:
        recipe = default_recipe()
    encoders = load_eval_encoders(checkpoint, recipe)
    if encoders.recipe_hash != meta["recipe_hash"]:
        raise UsageError(
            f"{index_dir}: the index was made with recipe {meta['recipe_hash']} ({meta['checkpoint']}), not "
            f"{encoders.recipe_hash}; pass the index's --checkpoint or rebuild the index"
        )
    return encoders
