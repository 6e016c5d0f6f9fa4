"""The CLI surface: verbs, help, exit codes, error rendering."""

from __future__ import annotations

import subprocess
import sys

import pytest

from avcli.cli import run

VERBS = ["ingest", "pretrain", "probe", "retrieve", "fingerprint", "validate"]


def test_help_lists_every_verb(capsys):
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_has_its_own_help(verb, capsys):
    assert run([verb, "--help"]) == 0
    assert f"avcli {verb}" in capsys.readouterr().out


def test_fingerprint_lists_its_subcommands(capsys):
    assert run(["fingerprint", "--help"]) == 0
    out = capsys.readouterr().out
    for sub in ("index", "query", "eval", "dedup"):
        assert sub in out
    assert run(["fingerprint", "no-such-subcommand"]) == 2


def test_unknown_option_is_a_usage_error(capsys):
    assert run(["probe", "--no-such-option"]) == 2


def test_console_script_and_module_entry_points_work():
    done = subprocess.run([sys.executable, "-m", "avcli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("avcli ")
    done = subprocess.run(["avcli", "validate", "/nonexistent.yaml"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stdout == "" and "Traceback" not in done.stderr and "recipe file not found" in done.stderr
