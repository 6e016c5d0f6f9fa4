"""`avcli retrieve`: nearest-neighbour retrieval (not built yet: it exits 2 and says so)."""

from __future__ import annotations

from typing import List, Optional

import typer

from avcli.errors import NotImplementedYet


def register(app: typer.Typer) -> None:
    @app.command(
        "retrieve",
        help="Nearest-neighbour retrieval: R@k protocol, cross-modal search, query by example (not implemented yet).",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def retrieve(args: Optional[List[str]] = typer.Argument(None, hidden=True)) -> int:
        raise NotImplementedYet("avcli retrieve is not implemented yet")
