"""Recipe schema, YAML loading, overrides and `avcli validate`."""

from __future__ import annotations

import pytest
import yaml

from avcli.cli import run
from avcli.errors import RecipeError, UsageError
from avcli.recipe import load_recipe, recipe_to_yaml
from avcli.recipe.overrides import apply_overrides

from conftest import REPO, tiny_recipe_dict

SHIPPED = sorted((REPO / "recipes").glob("*.yaml"))


def test_recipes_folder_is_not_empty():
    assert any(p.name == "quickstart.yaml" for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path, capsys):
    assert run(["validate", str(path)]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["method"]["kind"]
    assert resolved["data"]["catalog"].startswith("/")  # paths resolved


def test_misspelt_key_is_named_with_a_suggestion(tmp_path, write_recipe, capsys):
    tree = tiny_recipe_dict(tmp_path / "c", tmp_path / "r")
    tree["data"]["clip"]["framse"] = 8
    path = write_recipe(tree)
    assert run(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.clip.framse" in err and "did you mean 'frames'" in err
    assert "Traceback" not in err


def test_every_error_is_reported_at_once(tmp_path, write_recipe):
    tree = tiny_recipe_dict(tmp_path / "c", tmp_path / "r")
    tree["training"]["batch_size"] = "many"
    tree["model"]["video"]["name"] = "resnet9000"
    del tree["output"]
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(tree))
    paths = [p for p, _ in info.value.problems]
    assert "training.batch_size" in paths and "output" in paths
    tree["training"]["batch_size"] = 4
    tree["output"] = {"run_dir": "x"}
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(tree))
    assert info.value.problems[0][0] == "model.video.name"


def test_steps_and_epochs_are_exclusive(tmp_path, write_recipe):
    tree = tiny_recipe_dict(tmp_path / "c", tmp_path / "r", epochs=2)
    with pytest.raises(RecipeError, match="exactly one of training.epochs and training.steps"):
        load_recipe(write_recipe(tree))


def test_overrides_set_parse_yaml_scalars_and_delete():
    tree = {"a": {"b": 1, "c": [1, 2]}, "d": 2}
    out = apply_overrides(tree, ["a.b=0.5", "a.new.deep=true", "e=[3, 4]", "~d", "a.c=null"])
    assert out == {"a": {"b": 0.5, "c": None, "new": {"deep": True}}, "e": [3, 4]}
    assert tree == {"a": {"b": 1, "c": [1, 2]}, "d": 2}  # the input is not modified


@pytest.mark.parametrize("item", ["~missing.key", "noequals", "a.b.c=1", "x..y=1"])
def test_bad_overrides_are_usage_errors(item):
    with pytest.raises(UsageError):
        apply_overrides({"a": {"b": 1}}, [item])


def test_validate_applies_overrides_and_output_round_trips(tmp_path, write_recipe, capsys):
    path = write_recipe(tiny_recipe_dict(tmp_path / "c", tmp_path / "r"))
    assert run(["validate", str(path), "training.batch_size=4", "method.temperature=0.2"]) == 0
    text = capsys.readouterr().out
    tree = yaml.safe_load(text)
    assert tree["training"]["batch_size"] == 4 and tree["method"]["temperature"] == 0.2
    again = write_recipe(tree, "again.yaml")
    assert recipe_to_yaml(load_recipe(again)) == text


def test_missing_and_malformed_recipe_files(tmp_path, capsys):
    assert run(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "recipe file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    assert run(["validate", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
