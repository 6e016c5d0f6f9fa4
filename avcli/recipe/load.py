"""Read a recipe file, apply overrides, validate, and write the resolved recipe back out."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from avcli.errors import RecipeError, UsageError
from avcli.recipe.overrides import apply_overrides
from avcli.recipe.schema import Recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load and validate `path` with `overrides`; raise RecipeError listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: recipe file not found")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(tree, dict):
        raise UsageError(f"{path}: a recipe is a YAML mapping (data:, model:, method:, ...), got {type(tree).__name__}")
    return recipe_from_dict(apply_overrides(tree, overrides or []), source=str(path))


def recipe_from_dict(tree: dict, source: str = "<recipe>") -> Recipe:
    try:
        recipe = Recipe.model_validate(tree)
    except ValidationError as exc:
        raise RecipeError(source, [_describe(err, tree) for err in exc.errors()]) from None
    problems = _semantic_problems(recipe)
    if problems:
        raise RecipeError(source, problems)
    return _resolve_paths(recipe)


def _describe(err: dict, tree: dict) -> tuple[str, str]:
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc)
    if err["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return path, f"unknown key{hint}"
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if err["type"] != "missing" and "input" in err and not isinstance(err["input"], (dict, list)):
        message += f" (got {err['input']!r})"
    return path, message


def _known_keys(loc: list[str]) -> list[str]:
    """Field names of the schema section at `loc` (for did-you-mean hints)."""
    model: Any = Recipe
    for part in loc:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = field.annotation
        args = getattr(model, "__args__", None)
        if args:  # Optional[X] → X
            model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _semantic_problems(recipe: Recipe) -> list[tuple[str, str]]:
    """Checks that need more than one field or the registries."""
    from avcli.models.registry import AUDIO_ENCODERS, VIDEO_ENCODERS

    problems = []
    for key, registry, encoder in (
        ("model.video.name", VIDEO_ENCODERS, recipe.model.video),
        ("model.audio.name", AUDIO_ENCODERS, recipe.model.audio),
    ):
        if encoder.name not in registry:
            problems.append((key, f"unknown encoder {encoder.name!r}; choose one of {', '.join(sorted(registry))}"))
    clip = recipe.data.clip
    if clip.resize_to < clip.size:
        problems.append(("data.clip.resize", f"must be >= data.clip.size ({clip.size}), got {clip.resize_to}"))
    if clip.frames / clip.fps > clip.audio_seconds + 1e-9:
        problems.append(
            ("data.clip.audio_seconds", "the audio window must cover the video clip (frames / fps seconds)")
        )
    sampler = recipe.data.sampler
    wanted = METHOD_SAMPLERS.get(recipe.method.kind, ())
    if sampler.kind not in wanted:
        problems.append(
            ("data.sampler.kind", f"method {recipe.method.kind} trains on {' or '.join(wanted)} samples, not {sampler.kind}")
        )
    if sampler.kind == "hierarchical" and recipe.training.batch_size % sampler.clips_per_title:
        problems.append(
            ("training.batch_size", f"must be a multiple of data.sampler.clips_per_title ({sampler.clips_per_title})")
        )
    return problems


# which samplers produce the samples each method's objective expects
METHOD_SAMPLERS = {
    "xid": ("uniform", "hierarchical"),
    "robust_xid": ("uniform", "hierarchical"),
    "avts": ("sync_pairs",),
    "temporal": ("temporal",),
    "movies": ("hierarchical",),
}


def _resolve_paths(recipe: Recipe) -> Recipe:
    recipe.data.catalog = recipe.data.catalog.expanduser().resolve()
    recipe.output.run_dir = recipe.output.run_dir.expanduser().resolve()
    return recipe


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe (defaults filled in) as YAML, loadable again by `load_recipe`."""
    tree = recipe.model_dump(mode="json")
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=110)


def save_recipe(recipe: Recipe, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(recipe_to_yaml(recipe))
    tmp.replace(path)
