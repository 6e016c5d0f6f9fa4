"""Encoders for evaluation: from a checkpoint (with the recipe saved beside it) or randomly initialised."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
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
    stats: dict = field(default_factory=dict)  # where the audio statistics came from, when fitted for the probe

    @property
    def recipe_hash(self) -> str:
        return hashlib.sha1(recipe_to_yaml(self.recipe).encode()).hexdigest()[:12]

    @property
    def frontend_digest(self) -> str:
        """The audio statistics in use (a random-init frontend's are fitted on the task): part of a cache key."""
        state = [self.frontend.mean, self.frontend.std, self.frontend.fitted]
        return hashlib.sha1(b"".join(t.detach().cpu().numpy().tobytes() for t in state)).hexdigest()[:12]

    def architecture(self, modality: str) -> str:
        return architecture(self.recipe, modality)


def architecture(recipe: Recipe, modality: str) -> str:
    """The encoder a result measures, in words: "conv2d_10 w64 on avid_spectrogram 257 bins at 24 kHz"."""
    if modality == "audio":
        spec, audio = recipe.model.audio, recipe.data.audio
        features = f"log_mel {audio.n_mels} mels" if audio.kind == "log_mel" else "avid_spectrogram 257 bins"
        rate = recipe.data.clip.sample_rate
        return f"{spec.name} w{_width(spec)} on {features} at {rate / 1000:g} kHz"
    spec, clip = recipe.model.video, recipe.data.clip
    return f"{spec.name} w{_width(spec)} on {clip.frames}×{clip.size}² frames at {clip.fps:g} fps"


def _width(spec) -> int:
    if spec.width is not None:
        return spec.width
    return 16 if spec.name.startswith("tiny") else 64


def load_eval_encoders(checkpoint: str, recipe_path: str | Path | None,
                       overrides: list[str] | None = None) -> EvalEncoders:
    """`checkpoint` is a path (run dir, checkpoints/latest, step dir) or "random" (init from the recipe's seed,
    with `overrides` a.b=v applied to the recipe)."""
    if checkpoint == "random":
        recipe = load_recipe(recipe_path, overrides)
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
