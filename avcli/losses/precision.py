"""Losses compute in float32, whatever autocast the encoders run under.

Under bf16 autocast on CUDA a matmul is computed in bf16 even when both operands were cast with `.float()`:
autocast re-casts them. Contrastive logits at τ = 0.07 (and the soft targets at τ_s = 0.02) then carry bf16's
8-bit mantissa: softmax probabilities off by up to 15 % relative. Every loss function of this package is
therefore wrapped in `float32_loss` (autocast off, reduced-precision inputs upcast), and the objectives compute
their own similarities inside `full_precision()`. Encoders, heads and classifiers keep autocast.
"""

from __future__ import annotations

import contextlib
import functools

import torch

_DEVICE_TYPES = ("cuda", "cpu")
_REDUCED = (torch.float16, torch.bfloat16)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except (TypeError, RuntimeError):  # an older torch without the device_type argument
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


@contextlib.contextmanager
def full_precision():
    """Autocast off (on every device type where it is on) for the block."""
    with contextlib.ExitStack() as stack:
        for device_type in _DEVICE_TYPES:
            if _autocast_on(device_type):
                stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
        yield


def _upcast(x):
    if isinstance(x, torch.Tensor) and x.dtype in _REDUCED:
        return x.float()
    if isinstance(x, (tuple, list)):
        return type(x)(_upcast(v) for v in x)
    return x


def float32_loss(fn):
    """Run `fn` with autocast off and its bf16/fp16 tensor arguments (also inside tuples and lists) in float32."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with full_precision():
            return fn(*(_upcast(a) for a in args), **{k: _upcast(v) for k, v in kwargs.items()})

    return wrapper
