"""Where and how a run executes: device, autocast precision, seeding."""

from __future__ import annotations

import contextlib
import random

import torch

from avcli.errors import UsageError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"training.device={name}: CUDA is not available here; use device: auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("training.device=mps: MPS is not available here; use device: auto or cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA by default (auto) or when asked; fp32 otherwise. Never pure fp16."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
