"""`avcli pretrain export CKPT --out DIR`: the encoders of a checkpoint in a form that needs no avcli.

DIR/video_encoder.safetensors and DIR/audio_encoder.safetensors hold each tower's state dict. For towers that
are torchvision architectures (video r2plus1d_18, mc3_18, r3d_18; audio resnet18_2d) the keys are torchvision's
own, without the classifier, so this loads them with torchvision alone:

    model = torchvision.models.video.r2plus1d_18()
    model.fc = torch.nn.Identity()           # avcli trains the pooled 512-d feature, not a classifier
    model.load_state_dict(safetensors.torch.load_file("video_encoder.safetensors"))

Other towers (AVID's R(2+1)D, the tiny CPU variants, Conv2D-10) are avcli's own architectures: their state dict
is exported as avcli names it and preprocessing.json says so. DIR/preprocessing.json describes the inputs the
encoders expect (frames, fps, crop, normalisation; audio rate, features and the per-frequency statistics).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from avcli.data.video_transforms import IMAGENET_MEAN, IMAGENET_STD
from avcli.media.audio_features import build_audio_frontend
from avcli.models import build_model
from avcli.recipe import load_recipe
from avcli.train.checkpoint import ENCODERS, RECIPE, load_encoders, load_train_state, resolve_checkpoint

FORMAT = "avcli-export/1"
TORCHVISION_VIDEO = {"r2plus1d_18", "mc3_18", "r3d_18"}


def _tower(module: torch.nn.Module, name: str, width: int | None, modality: str) -> tuple[dict, dict]:
    """(state dict to save, its description) of one tower."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if modality == "video" and name in TORCHVISION_VIDEO:
        info = {
            "architecture": f"torchvision.models.video.{name}",
            "torchvision": True,
            "load": f"m = torchvision.models.video.{name}(); m.fc = torch.nn.Identity(); "
                    f"m.load_state_dict(safetensors.torch.load_file('{modality}_encoder.safetensors'))",
        }
    elif modality == "audio" and name == "resnet18_2d":
        info = {
            "architecture": "torchvision.models.resnet18 with a one-channel stem",
            "torchvision": True,
            "load": "m = torchvision.models.resnet18(); m.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False); "
                    "m.fc = torch.nn.Identity(); "
                    "m.load_state_dict(safetensors.torch.load_file('audio_encoder.safetensors'))",
        }
    else:
        cls = type(module)
        return state, {
            "architecture": f"{cls.__module__}.{cls.__qualname__}",
            "torchvision": False,
            "note": f"{name} is an avcli architecture, not a torchvision one: the state dict is avcli's, loadable "
                    f"with avcli.models.registry (model.{modality}.name={name}, width={width})",
            "name": name,
            "width": width,
        }
    state = {k[len("net."):]: v for k, v in state.items()}  # TorchvisionVideoResNet / ResNet18Audio keep it in .net
    return state, info


def _audio_features(frontend, clip, audio_cfg) -> dict:
    features = frontend.features
    described = {"kind": audio_cfg.kind, "sample_rate": clip.sample_rate, "channels": "mono",
                 "seconds": clip.audio_seconds, "hop_length": features.hop, "top_db": audio_cfg.top_db,
                 "frames": "samples // hop_length (the STFT is centred; extra frames are dropped)",
                 "db": "10·log10(max(power, 1e-10)), floored at top_db below each clip's peak",
                 "layout": "B×1×T×F (time × frequency)"}
    if audio_cfg.kind == "log_mel":
        mel = features.mel
        described.update({
            "torchaudio": "torchaudio.transforms.MelSpectrogram",
            "n_fft": mel.n_fft, "win_length": mel.win_length, "n_mels": mel.n_mels, "power": mel.power,
            "f_min": mel.f_min, "f_max": mel.f_max, "window": "hann",
        })
    else:
        described.update({
            "n_fft": features.n_fft, "window": "hann", "center": True, "pad_mode": "constant",
            "bins": "power of bins 0..512; bin 0 kept, bins 1..512 averaged in adjacent pairs → 257",
        })
    described["normalisation"] = {"per": "frequency bin", "formula": "(features − mean) / std",
                                  "mean": frontend.mean.tolist(), "std": frontend.std.tolist()}
    return described


def export_encoders(checkpoint: str | Path, out: Path) -> dict:
    """Write DIR/{video_encoder,audio_encoder}.safetensors and DIR/preprocessing.json; returns a summary."""
    step_dir = resolve_checkpoint(checkpoint)
    recipe = load_recipe(step_dir / RECIPE)
    model = build_model(recipe.model)
    frontend = build_audio_frontend(recipe.data.audio, recipe.data.clip.sample_rate)
    load_encoders(step_dir / ENCODERS, model, frontend)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clip = recipe.data.clip
    description = {"format": FORMAT, "checkpoint": str(step_dir), "method": recipe.method.kind}
    for modality, tower, cfg in (("video", model.video, recipe.model.video), ("audio", model.audio, recipe.model.audio)):
        state, info = _tower(tower, cfg.name, cfg.width, modality)
        path = out / f"{modality}_encoder.safetensors"
        save_file(state, str(path), metadata={"format": FORMAT, "architecture": info["architecture"]})
        description[modality] = {"file": path.name, **info, "output": f"B×{tower.out_dim} pooled feature"}
    description["video"]["input"] = {
        "layout": "B×3×T×H×W float32, RGB", "frames": clip.frames, "fps": clip.fps, "resize_short_side": clip.resize_to,
        "crop": f"centre {clip.size}×{clip.size} (training used random resized crops)", "scale": "uint8 / 255",
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
    }
    description["audio"]["input"] = _audio_features(frontend, clip, recipe.data.audio)
    fitted_on = load_train_state(step_dir).get("audio_stats_clips") if (step_dir / "train_state.pt").exists() else None
    if fitted_on is not None:
        description["audio"]["input"]["normalisation"]["fitted_on_windows"] = fitted_on
    (out / "preprocessing.json").write_text(json.dumps(description, indent=2) + "\n")
    return {"out": str(out), "checkpoint": str(step_dir),
            **{m: {"file": str(out / description[m]["file"]), "architecture": description[m]["architecture"],
                   "torchvision": description[m]["torchvision"]} for m in ("video", "audio")}}
