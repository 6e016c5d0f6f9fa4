"""Exit codes and the exceptions that carry them (DESIGN.md, Conventions → CLI).

Library code raises these with one sentence naming the file or key and the fix; `avcli.cli` renders them
without a traceback (unless AVCLI_DEBUG=1) and exits with the code.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # runtime failure
EXIT_USAGE = 2  # usage or recipe error
EXIT_REJECTED = 3  # finished, but some inputs were rejected
EXIT_INTERRUPTED = 4  # interrupted with a resumable checkpoint


class AvcliError(Exception):
    """A failure the user can act on; `str(error)` is the one-line message."""

    exit_code = EXIT_FAILURE


class UsageError(AvcliError):
    """Bad command-line arguments, a missing file given by the user, an unusable option combination."""

    exit_code = EXIT_USAGE


class RecipeError(UsageError):
    """A recipe that does not validate: every problem, each with its dotted path."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s) in the recipe"]
        lines += [f"  {path or '<root>'}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


class NotImplementedYet(UsageError):
    """A verb or option that exists in the interface but is not built yet."""


class Interrupted(AvcliError):
    """Stopped on request after writing a checkpoint that `--resume auto` continues from."""

    exit_code = EXIT_INTERRUPTED
