"""Everything avcli tells a human goes through here, to stderr (stdout is for JSON only).

`get_logger` gives a standard logger; `progress` a rich progress bar that is drawn only when stderr is a
terminal (in pipelines and CI it is a no-op, so logs stay clean).
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator

_CONFIGURED = False


def configure(verbose: bool = False, quiet: bool = False) -> None:
    """Install one stderr handler on the `avcli` logger (idempotent)."""
    global _CONFIGURED
    logger = logging.getLogger("avcli")
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logger.setLevel(level)
    if _CONFIGURED:
        return
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.propagate = False
    _CONFIGURED = True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the call (it may be swapped, e.g. by tests)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("avcli") else f"avcli.{name}")


class _NoProgress:
    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        return 0

    def update(self, task_id: int, **kwargs) -> None:
        pass

    def advance(self, task_id: int, advance: float = 1) -> None:
        pass


@contextmanager
def progress(transient: bool = True, enabled: bool = True) -> Iterator:
    """A rich Progress on stderr when it is a terminal (and `enabled`: one bar per job, not per process),
    otherwise an object with the same methods doing nothing."""
    if not enabled or not sys.stderr.isatty():
        yield _NoProgress()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=transient,
    )
    with bar:
        yield _FieldDefaults(bar)


class _FieldDefaults:
    """Wraps rich Progress so that `info` always exists as a field."""

    def __init__(self, bar):
        self._bar = bar

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        fields.setdefault("info", "")
        return self._bar.add_task(description, total=total, **fields)

    def update(self, task_id: int, **kwargs) -> None:
        self._bar.update(task_id, **kwargs)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self._bar.advance(task_id, advance)
