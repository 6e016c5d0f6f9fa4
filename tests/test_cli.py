"""The CLI surface: verbs, help, exit codes, error rendering."""

from __future__ import annotations

import subprocess
import sys

import pytest

from avcli.cli import run

VERBS = ["ingest", "pretrain", "probe", "retrieve", "fingerprint", "validate", "env"]
SUB_VERBS = {
    "ingest": ["merge", "stats"],
    "pretrain": ["export"],
    "probe": ["report"],
    "fingerprint": ["index", "query", "eval", "dedup"],
}


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


@pytest.mark.parametrize("verb", sorted(SUB_VERBS))
def test_every_sub_verb_is_a_command_listed_in_its_verbs_help(verb, capsys):
    assert run([verb, "--help"]) == 0
    out = capsys.readouterr().out
    commands = out[out.index("Commands:"):]
    for sub in SUB_VERBS[verb]:
        assert f"\n  {sub} " in commands
        assert run([verb, sub, "--help"]) == 0
        assert f"Usage: avcli {verb} {sub} " in capsys.readouterr().out


@pytest.mark.parametrize("verb, option", [("ingest", "--out"), ("pretrain", "--resume")])
def test_a_verb_with_a_default_command_shows_its_options_and_usage_under_the_verbs_name(verb, option, capsys):
    assert run([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: avcli {verb} [OPTIONS]") and f"or: avcli {verb} COMMAND [ARGS]..." in out
    assert option in out
    # the default command's own help (a path or recipe first) and its errors name the verb, not the hidden command
    assert run([verb, "some/input", "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"Usage: avcli {verb} [OPTIONS]")
    assert run([verb, "some/input", "--no-such-option"]) == 2
    assert f"Try 'avcli {verb} -h' for help." in capsys.readouterr().err


def test_ingest_keeps_its_earlier_forms(tmp_path, capsys):
    assert run(["ingest"]) == 2
    assert "--out CATALOG is required" in capsys.readouterr().err
    # options before the sub-command's name still reach stats / merge
    assert run(["ingest", "--json", "stats", str(tmp_path / "nope")]) == 2
    assert "not a catalog" in capsys.readouterr().err
    assert run(["ingest", "--out", str(tmp_path / "m"), "merge", str(tmp_path / "nope")]) == 2
    assert run(["ingest", "stats", str(tmp_path / "nope")]) == 2
    assert "not a catalog" in capsys.readouterr().err
    assert run(["ingest", "merge", str(tmp_path / "nope")]) == 2  # --out is required
    assert "--out" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(capsys):
    assert run(["probe", "--no-such-option"]) == 2


def test_console_script_and_module_entry_points_work():
    done = subprocess.run([sys.executable, "-m", "avcli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("avcli ")
    done = subprocess.run(["avcli", "validate", "/nonexistent.yaml"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stdout == "" and "Traceback" not in done.stderr and "recipe file not found" in done.stderr
