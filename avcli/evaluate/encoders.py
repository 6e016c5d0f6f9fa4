"""Encoders for evaluation: from a checkpoint (with the recipe saved beside it) or randomly initialised."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from avcli.media.audio_features import AudioFrontend, build_audio_frontend
from avcli.models import build_model
from avcli.recipe import Recipe, load_recipe, recipe_to_yaml
from avcli.train.checkpoint import RECIPE, load_encoders, resolve_checkpoint


@dataclass
class EvalEncoders:
    recipe: Recipe
    model: torch.nn.Module
    frontend: AudioFrontend
    checkpoint: str  # step directory, or "random"
    run_dir: Path | None

    @property
    def recipe_hash(self) -> str:
        return hashlib.sha1(recipe_to_yaml(self.recipe).encode()).hexdigest()[:12]


def load_eval_encoders(checkpoint: str, recipe_path: str | Path | None) -> EvalEncoders:
    """`checkpoint` is a path (run dir, checkpoints/latest, step dir) or "random" (init from the recipe's seed)."""
    if checkpoint == "random":
        recipe = load_recipe(recipe_path)
        torch.manual_seed(recipe.training.seed)
        model = build_model(recipe.model)
        frontend = build_audio_frontend(recipe.data.audio, recipe.data.clip.sample_rate)
        return EvalEncoders(recipe, model.eval(), frontend.eval(), "random", None)
    step_dir = resolve_checkpoint(checkpoint)
    recipe = load_recipe(recipe_path or step_dir / RECIPE)
    model = build_model(recipe.model)
    frontend = build_audio_frontend(recipe.data.audio, recipe.data.clip.sample_rate)
    load_encoders(step_dir / "encoders.safetensors", model, frontend)
    run_dir = step_dir.parent.parent if step_dir.parent.name == "checkpoints" else None
    return EvalEncoders(recipe, model.eval(), frontend.eval(), str(step_dir), run_dir)
