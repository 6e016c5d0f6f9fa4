"""`avcli validate RECIPE [a.b=v ...]`: print the resolved recipe (YAML) or every problem with its path."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from avcli.recipe import load_recipe, recipe_to_yaml


def register(app: typer.Typer) -> None:
    @app.command("validate", help="Check a recipe without running it; print it resolved (defaults filled in).")
    def validate(
        recipe: str = typer.Argument(..., help="Recipe YAML file."),
        overrides: Optional[List[str]] = typer.Argument(None, help="Overrides: a.b=value (YAML scalar), ~a.b deletes."),
    ) -> int:
        sys.stdout.write(recipe_to_yaml(load_recipe(recipe, overrides or [])))
        return 0
