"""The `avcli` entry point: registers the verbs, global options, exit codes and error rendering.

stdout carries machine-readable output only; logs, warnings and progress go to stderr. A failure is one
sentence on stderr and an exit code from avcli.errors (AVCLI_DEBUG=1 adds the traceback).
"""

from __future__ import annotations

import os
import sys
import traceback

import typer
from typer.core import TyperGroup

from avcli import __version__
from avcli.commands import env, fingerprint, ingest, pretrain, probe, retrieve, validate
from avcli.errors import EXIT_FAILURE, EXIT_USAGE, AvcliError
from avcli.log import configure

# `avcli --help` lists the verbs in the order of the lifecycle, not in typer's (commands first, then groups)
VERB_ORDER = ("ingest", "pretrain", "validate", "probe", "retrieve", "fingerprint", "env")


class _Verbs(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: VERB_ORDER.index(name) if name in VERB_ORDER else len(VERB_ORDER))


app = typer.Typer(
    name="avcli",
    cls=_Verbs,
    help="Self-supervised audio-visual representation learning: ingest videos, pretrain encoders, measure them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"avcli {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging on stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Warnings and errors only on stderr."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    configure(verbose=verbose, quiet=quiet)


for module in (ingest, pretrain, probe, retrieve, fingerprint, validate, env):
    module.register(app)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this directly)."""
    try:
        result = app(args=argv, prog_name="avcli", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except AvcliError as exc:
        if os.environ.get("AVCLI_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(f"avcli: error: {_rank_prefix()}{exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("avcli: interrupted\n")
        return 130
    except Exception as exc:
        # Click's exceptions, whether from click itself or the copy newer typer releases vendor: matched by
        # behaviour rather than by class so that both work.
        if hasattr(exc, "exit_code") and type(exc).__name__ == "Exit":
            return exc.exit_code
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show(file=sys.stderr)
            return EXIT_USAGE if exc.exit_code == 2 else exc.exit_code
        if type(exc).__name__ == "Abort":
            sys.stderr.write("avcli: aborted\n")
            return 130
        if os.environ.get("AVCLI_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(
            f"avcli: internal error: {type(exc).__name__}: {exc} (rerun with AVCLI_DEBUG=1 for the traceback)\n"
        )
        return EXIT_FAILURE


def _rank_prefix() -> str:
    """"[rank R] " in a job of several processes (torchrun/srun merge their logs), else nothing."""
    from avcli.train.launch import launch_env

    env = launch_env()
    return f"[rank {env.rank}] " if env.world_size > 1 else ""


def main() -> None:
    sys.exit(run())
