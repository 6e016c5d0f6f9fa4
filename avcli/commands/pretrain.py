"""`avcli pretrain RECIPE [a.b=v ...]`: train encoders; prints a JSON summary (run dir, checkpoint) on stdout."""

from __future__ import annotations

from typing import List, Optional

import typer

from avcli.commands.output import emit
from avcli.recipe import load_recipe


def register(app: typer.Typer) -> None:
    @app.command("pretrain", help="Train audio and video encoders with the recipe's method.")
    def pretrain(
        recipe: str = typer.Argument(..., help="Recipe YAML file."),
        overrides: Optional[List[str]] = typer.Argument(None, help="Overrides: a.b=value (YAML scalar), ~a.b deletes."),
        resume: Optional[str] = typer.Option(
            None, "--resume", help="'auto' continues from the newest complete checkpoint of the run, or a checkpoint path."
        ),
    ) -> int:
        from avcli.train.loop import pretrain as run_pretraining

        summary = run_pretraining(load_recipe(recipe, overrides or []), resume=resume)
        emit(summary)
        return 0
