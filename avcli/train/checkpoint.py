"""Checkpoints (DESIGN.md → Checkpoints).

`RUN/checkpoints/step_N/` holds `encoders.safetensors` (model weights and the audio front end's statistics:
safe to download and share), `train_state.pt` (optimiser, scheduler, the objective's state — banks, queues, Z —,
sampler position, step, samples seen, non-finite steps, the world size and every rank's RNG states; loaded with
`weights_only=True`; there is no loss scaler, bf16 needs none) and the resolved `recipe.yaml`. A checkpoint is written under a temporary name and renamed,
so a `step_N` directory is always complete; `latest` is a symlink replaced atomically.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from avcli.errors import UsageError

ENCODERS = "encoders.safetensors"
TRAIN_STATE = "train_state.pt"
RECIPE = "recipe.yaml"
FORMAT = "avcli-encoders/1"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def encoder_tensors(model: torch.nn.Module, frontend: torch.nn.Module) -> dict[str, torch.Tensor]:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"audio_frontend.{k}": v.detach().cpu().contiguous() for k, v in frontend.state_dict().items()})
    return tensors


def load_encoders(path: Path, model: torch.nn.Module, frontend: torch.nn.Module) -> None:
    tensors = load_file(str(path))
    front = {k[len("audio_frontend.") :]: v for k, v in tensors.items() if k.startswith("audio_frontend.")}
    weights = {k: v for k, v in tensors.items() if not k.startswith("audio_frontend.")}
    try:
        model.load_state_dict(weights)
        frontend.load_state_dict(front)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(f"{path}: weights do not match the recipe's model ({first})") from None


def rng_state(device: torch.device | None = None) -> dict:
    """This process's random streams: torch's CPU generator, Python's, and the CUDA generator of the training
    device (only that one: under torchrun each process owns one GPU and must not touch the others)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device is not None and device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    elif device is None and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda_device" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"], device)
    elif "cuda" in state and torch.cuda.is_available() and device is None:  # checkpoints from before per-device
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: Path, step: int, model, frontend, train_state: dict, recipe_yaml: str, keep_last_n: int
) -> Path:
    checkpoints = Path(run_dir) / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    final = checkpoints / f"step_{step}"
    tmp = checkpoints / f".step_{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(encoder_tensors(model, frontend), str(tmp / ENCODERS), metadata={"format": FORMAT, "step": str(step)})
    torch.save(train_state, tmp / TRAIN_STATE)
    (tmp / RECIPE).write_text(recipe_yaml)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    link_tmp = checkpoints / ".latest.tmp"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    link_tmp.symlink_to(final.name)
    os.replace(link_tmp, checkpoints / "latest")
    for old in complete_checkpoints(run_dir)[:-keep_last_n]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete `step_N` directories of a run, oldest first."""
    checkpoints = Path(run_dir) / "checkpoints"
    if not checkpoints.is_dir():
        return []
    found = []
    for child in checkpoints.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir() and all((child / f).exists() for f in (ENCODERS, TRAIN_STATE, RECIPE)):
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def resolve_checkpoint(path: str | Path) -> Path:
    """A step directory from a step dir, `checkpoints/latest`, a `checkpoints/` dir or a run dir."""
    path = Path(path).expanduser()
    if (path / ENCODERS).exists():
        return path.resolve()
    for run_dir in (path, path.parent):
        found = complete_checkpoints(run_dir)
        if found:
            return found[-1]
    if path.is_dir() and path.name == "checkpoints":
        found = complete_checkpoints(path.parent)
        if found:
            return found[-1]
    raise UsageError(f"{path}: no checkpoint there (expected a run directory or checkpoints/step_N/{ENCODERS})")


def load_train_state(step_dir: Path) -> dict:
    return torch.load(Path(step_dir) / TRAIN_STATE, map_location="cpu", weights_only=True)
