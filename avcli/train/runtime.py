"""Where and how a run executes: device, autocast precision, seeding, determinism, memory format, compilation."""

from __future__ import annotations

import contextlib
import os
import random
import sys

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
    """bf16 autocast on CUDA by default (auto) or when asked; fp32 otherwise. Never pure fp16: bf16 has fp32's
    range, so no loss scaling (and no GradScaler state in checkpoints) is needed."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device):
    """`training.deterministic`: deterministic kernels only, so a resumed run repeats an uninterrupted one bit
    for bit (on CPU; on CUDA a few kernels have no deterministic version and only warn). Otherwise cuDNN may
    benchmark convolution algorithms, which is faster for the fixed clip shapes of a run. Restored on exit."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for reproducible GEMMs
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2], before[3]


def use_channels_last(model: torch.nn.Module) -> None:
    """`training.channels_last`: the video encoder's weights and inputs in channels_last_3d (NDHWC), the audio
    encoder's in channels_last — the layouts cuDNN's fastest bf16 convolutions want on recent GPUs."""
    for tower, layout in ((model.video, torch.channels_last_3d), (model.audio, torch.channels_last)):
        tower.to(memory_format=layout)
        tower.register_forward_pre_hook(
            lambda module, args, layout=layout: (args[0].contiguous(memory_format=layout), *args[1:])
        )


def compile_encoders(model: torch.nn.Module) -> None:
    """`training.compile`: torch.compile the two encoders in place (parameter names, hence checkpoints, stay
    the same); the objectives stay eager, their Python control flow would only cause graph breaks."""
    model.video.compile()
    model.audio.compile()


def peak_memory_gb(device: torch.device) -> float:
    """Peak allocated GPU memory on CUDA; otherwise the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / (2**30 if sys.platform == "darwin" else 2**20)
