"""`avcli pretrain RECIPE [a.b=v ...]`: train encoders; prints a JSON summary (run dir, checkpoint) on stdout.
`avcli pretrain export CKPT --out DIR`: the checkpoint's encoders as plain (torchvision where possible) weights.

`pretrain` is a command group whose hidden default command trains: a first argument that is not a sub-command's name
(`export`) is a recipe, so `avcli pretrain RECIPE ...` works exactly as it always has, and `avcli pretrain --help`
shows the recipe, the overrides and --resume beside `export`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from avcli.commands.default_group import DefaultCommand, DefaultCommandGroup
from avcli.commands.output import emit

HELP = ("Train audio and video encoders with the recipe's method (under torchrun every process runs this), "
        "or export a checkpoint's encoders.")


class _TrainByDefault(DefaultCommandGroup):
    default_command = "train"


def register(app: typer.Typer) -> None:
    group = typer.Typer(cls=_TrainByDefault, help=HELP, no_args_is_help=True, rich_markup_mode=None)

    @group.command("train", cls=DefaultCommand, hidden=True,
                   help="Train audio and video encoders with the recipe's method.")
    def train(
        recipe: str = typer.Argument(..., help="Recipe YAML file."),
        overrides: Optional[List[str]] = typer.Argument(None, help="Overrides: a.b=value (YAML scalar), ~a.b deletes."),
        resume: Optional[str] = typer.Option(
            None, "--resume", help="'auto' continues from the newest complete checkpoint of the run, or a checkpoint path."
        ),
    ) -> int:
        from avcli.recipe import load_recipe
        from avcli.train.launch import launch_env
        from avcli.train.loop import pretrain as run_pretraining

        summary = run_pretraining(load_recipe(recipe, overrides or []), resume=resume)
        if launch_env().rank == 0:  # one summary per job
            emit(summary)
        return 0

    @group.command("export", help="Write a checkpoint's video and audio encoders as safetensors state dicts "
                   "(torchvision's keys for torchvision architectures) and preprocessing.json.")
    def export(
        checkpoint: str = typer.Argument(..., help="A run directory, its checkpoints/ or a checkpoints/step_N."),
        out: Path = typer.Option(..., "--out", help="Directory to write the files to."),
    ) -> int:
        from avcli.train.export import export_encoders

        emit(export_encoders(checkpoint, out))
        return 0

    app.add_typer(group, name="pretrain")
