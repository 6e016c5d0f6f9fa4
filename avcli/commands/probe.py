"""`avcli probe --task T --checkpoint CKPT`: linear probe of frozen features; JSON line per modality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from avcli.commands.output import emit
from avcli.errors import UsageError
from avcli.log import get_logger

log = get_logger("probe")


def default_recipe() -> Path:
    """recipes/quickstart.yaml from the working directory, else from the avcli source tree."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = root / "recipes" / "quickstart.yaml"
        if candidate.is_file():
            return candidate
    raise UsageError("no recipes/quickstart.yaml here; pass --recipe for --checkpoint random")


def register(app: typer.Typer) -> None:
    @app.command("probe", help="Evaluate frozen encoders on a labelled task (linear probe).")
    def probe(
        task: str = typer.Option(..., "--task", help="Task name (synthetic)."),
        checkpoint: str = typer.Option(
            ..., "--checkpoint", help="Run dir, checkpoints/latest, a step dir, or 'random' for the baseline."
        ),
        data_root: Optional[Path] = typer.Option(
            None, "--data-root", help="Dataset root; for synthetic, defaults to the recipe's catalog."
        ),
        recipe: Optional[Path] = typer.Option(
            None, "--recipe", help="Recipe for the architecture (default: the checkpoint's; quickstart for random)."
        ),
        modality: str = typer.Option("both", "--modality", help="video, audio or both."),
        clips: int = typer.Option(4, "--clips", min=1, help="Evenly spaced clips averaged per video."),
        workers: int = typer.Option(0, "--workers", min=0, help="Data-loader workers for feature extraction."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    ) -> int:
        from avcli.evaluate.encoders import load_eval_encoders
        from avcli.evaluate.probe import run_linear_probe
        from avcli.tasks import load_task
        from avcli.train.runtime import resolve_device

        if modality not in ("video", "audio", "both"):
            raise UsageError(f"--modality {modality}: choose video, audio or both")
        modalities = ("video", "audio") if modality == "both" else (modality,)
        if checkpoint == "random" and recipe is None:
            recipe = default_recipe()
        encoders = load_eval_encoders(checkpoint, recipe)
        root = data_root or encoders.recipe.data.catalog
        results = run_linear_probe(
            encoders, load_task(task, root), modalities, clips, resolve_device(device), workers=workers
        )
        for result in results:
            emit(result)
            log.info("%s %s linear top-1 %.2f%% (chance %.2f%%)", task, result["modality"], result["top1"], result["chance"])
        if encoders.run_dir is not None:
            with open(encoders.run_dir / "results.jsonl", "a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in results)
        return 0
