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


def has_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bf16 natively: CPUs (autocast emulates what it lacks) and CUDA GPUs of compute
    capability 8.0 or later (A100, H100, RTX 30xx/40xx). V100 and T4 (7.x) only emulate it, far slower than fp16
    (`torch.cuda.is_bf16_supported()` says yes for them too unless asked without emulation)."""
    if device.type != "cuda":
        return True
    return torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_precision(device: torch.device, precision: str) -> str:
    """The precision a run trains in: "bf16", "fp16" (autocast with loss scaling) or "fp32".

    auto: bf16 autocast on GPUs that have it, fp16 autocast with a GradScaler on older GPUs (V100, T4: their
    tensor cores do fp16 only; bf16 would run emulated), fp32 on CPU. An explicit bf16 on an older GPU is refused
    rather than silently emulated."""
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if has_bf16(device) else "fp16"
    if precision == "bf16" and not has_bf16(device):
        name = torch.cuda.get_device_name(device)
        raise UsageError(f"training.precision=bf16: {device} ({name}) has no native bf16; use precision: auto (fp16 "
                         "with loss scaling on this GPU) or fp32")
    return precision


def describe_precision(precision: str, device: torch.device) -> str:
    return {"bf16": f"bf16 autocast on {device}", "fp32": f"fp32 on {device}",
            "fp16": f"fp16 autocast with loss scaling on {device}"}[precision]


def autocast(device: torch.device, precision: str):
    """The autocast context of a resolved precision (`resolve_precision`): bf16 or fp16 autocast, or nothing for
    fp32. The losses always compute their similarities in float32 (`avcli.losses.precision`)."""
    if precision == "auto":  # callers that did not resolve it (benchmarks): as a run would
        precision = resolve_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (small gradients would underflow fp16's range); a disabled, pass-through scaler
    otherwise. Its state (the scale) is saved with the checkpoint."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


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
