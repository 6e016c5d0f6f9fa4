"""`avcli fingerprint`: robust copy detection (not built yet: it exits 2 and says so)."""

from __future__ import annotations

from typing import List, Optional

import typer

from avcli.errors import NotImplementedYet


def register(app: typer.Typer) -> None:
    @app.command(
        "fingerprint",
        help="Robust video fingerprinting: index, query, eval, dedup (not implemented yet).",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def fingerprint(args: Optional[List[str]] = typer.Argument(None, hidden=True)) -> int:
        raise NotImplementedYet("avcli fingerprint is not implemented yet")
