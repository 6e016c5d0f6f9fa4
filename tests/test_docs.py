"""Docs that cannot rot: every `avcli ...` command line in README.md and docs/*.md parses, names only flags its
command has and recipes that exist, and sets only recipe keys the schema knows.

Commands are collected from fenced code blocks (a line, or lines joined by a trailing backslash; also after
`-m avcli` as under torchrun/srun, and after `|`, `&&` or `;`) and from inline code spans that start with
`avcli `. Nothing is executed:

- each command runs in-process with `--help` appended: exit 0 means every sub-command and flag parsed;
- every `--flag` it names appears in the help of the command it resolves to;
- every `recipes/*.yaml` it names exists;
- a command from a code block (a runnable example, not a synopsis such as `avcli ingest SRC... [--workers N]`) is
  also parsed by the CLI's own parser (types, required arguments) without running, and a `pretrain` or `validate`
  of a recipe in recipes/ loads that recipe with its overrides.

docs/results/ is left out on purpose: it records the commands that produced dated figures, as they were run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.main import get_command

from avcli.cli import app, run

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REDIRECTS = {">", ">>", "<", "2>"}
OPERATORS = {"|", "||", "&&", ";", "&", "(", ")", *REDIRECTS}
FLAG = re.compile(r"(?<![\w-])(--[a-zA-Z][\w-]*)")
RECIPE = re.compile(r"(?<![\w/.-])(recipes/[\w.-]+\.yaml)")


@dataclass(frozen=True)
class DocCommand:
    source: str  # file:line
    argv: tuple[str, ...]  # the arguments after `avcli`
    runnable: bool  # from a code block (a concrete example) rather than an inline synopsis

    def __str__(self) -> str:
        return f"{self.source}: avcli {' '.join(self.argv)}"


def _avcli_segments(tokens: list[str]) -> list[list[str]]:
    """The argument lists of every avcli invocation in one shell line's tokens."""
    segments, current, skip = [], [], False
    for token in tokens:
        if token in OPERATORS:
            segments.append(current)
            current, skip = [], token in REDIRECTS  # a redirection's file name is no command
        elif skip:
            skip = False
        else:
            current.append(token)
    segments.append(current)
    found = []
    for words in segments:
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # VAR=value prefixes
            words = words[1:]
        for i, word in enumerate(words):
            if word == "avcli" and (i == 0 or words[i - 1] == "-m"):
                found.append(words[i + 1:])
                break
    return found


def _shell_tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    # `2>` arrives as "2", ">": keep the operator whole
    out = []
    for token in tokens:
        if token in (">", ">>") and out and out[-1].isdigit():
            out[-1] = "2>"
            continue
        out.append(token)
    return out


def collect(path: Path) -> list[DocCommand]:
    commands = []
    text = path.read_text()
    in_block, lang, pending, start = False, "", "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_block, lang = (not in_block), stripped[3:].strip()
            continue
        where = f"{path.relative_to(ROOT)}:{number}"
        if in_block:
            if lang not in ("", "bash", "sh", "shell", "console"):
                continue  # python, yaml, json, text: not shell
            if stripped.startswith("$ "):
                stripped = stripped[2:]
            if not pending:
                start = number
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            full, pending = pending + stripped, ""
            if "avcli" not in full or full.startswith("{"):
                continue
            for argv in _avcli_segments(_shell_tokens(full)):
                commands.append(DocCommand(f"{path.relative_to(ROOT)}:{start}", tuple(argv), runnable=True))
        else:
            for span in re.findall(r"`(avcli [^`]+)`", line):
                commands.append(DocCommand(where, tuple(shlex.split(span)[1:]), runnable=False))
    return commands


COMMANDS = [command for path in DOCS for command in collect(path)]


def test_the_docs_are_there_and_hold_commands():
    names = {p.name for p in DOCS}
    for page in ("README.md", "ingest.md", "pretraining.md", "distributed.md", "methods.md", "probe.md",
                 "retrieval-and-fingerprinting.md", "performance.md", "development.md"):
        assert page in names
    assert len(COMMANDS) > 50
    assert all(c.argv for c in COMMANDS), [str(c) for c in COMMANDS if not c.argv]


def test_the_collector_reads_shell_forms():
    line = ("srun torchrun --nnodes 4 -m avcli pretrain recipes/xid.yaml --resume auto && "
            "find /d -name '*.mp4' | AVCLI_DEBUG=1 avcli ingest - --out c > rows.jsonl 2> log.txt")
    assert _avcli_segments(_shell_tokens(line)) == [
        ["pretrain", "recipes/xid.yaml", "--resume", "auto"], ["ingest", "-", "--out", "c"]]
    assert _avcli_segments(_shell_tokens("python -m avcli.tasks.spoken_digits digits/")) == []
    assert _avcli_segments(_shell_tokens("echo avcli pretrain  # a comment")) == []


def _help_of(argv: tuple[str, ...], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = run([*argv, "--help"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _parse_without_running(argv: tuple[str, ...]):
    """Walk the command tree as click does, making each context (which parses and converts every parameter and
    checks required ones) without invoking any callback."""
    command = get_command(app)
    ctx = command.make_context("avcli", list(argv))
    while hasattr(command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            break
        name, command, args = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, args, parent=ctx)
    return ctx


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_each_documented_command_parses_and_names_real_flags_and_recipes(command, capsys):
    code, helptext = _help_of(command.argv, capsys)
    assert code == 0, f"{command}: does not parse:\n{helptext}"
    for token in command.argv:
        for flag in FLAG.findall(token):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helptext), f"{command}: no flag {flag}"
        for recipe in RECIPE.findall(token):
            assert (ROOT / recipe).is_file(), f"{command}: no recipe {recipe}"
    if not command.runnable:
        return
    try:
        ctx = _parse_without_running(command.argv)
    except Exception as exc:  # click's UsageError / BadParameter
        pytest.fail(f"{command}: {type(exc).__name__}: {getattr(exc, 'format_message', lambda: exc)()}")
    if ctx.command.name in ("train", "validate") and ctx.params["recipe"].startswith("recipes/"):
        from avcli.errors import AvcliError
        from avcli.recipe import load_recipe

        try:
            load_recipe(ROOT / ctx.params["recipe"], ctx.params["overrides"] or [])
        except AvcliError as exc:  # names every unknown key or bad value with its dotted path
            pytest.fail(f"{command}: {exc}")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation other than - and _ dropped, spaces → -."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", [*DOCS, *sorted((ROOT / "docs" / "results").glob("*.md"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_and_headings_that_exist(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        where = page.relative_to(ROOT)
        assert resolved.exists(), f"{where}: link to missing {target}"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{where}: no heading #{anchor} in {file or page.name}"
