"""Batch norm over the global batch when several processes train (`training.sync_batchnorm`).

With per-process statistics, N processes × B clips normalise differently from one process × N·B clips, so the
loss is not the one-process loss of the global batch. On CUDA, torch's SyncBatchNorm does the job; it refuses
CPU tensors, so CPU (gloo) jobs get `GlobalBatchNorm`: the same statistics from two all-reduces with gradient
(mean, then the biased variance around it, as a one-process BatchNorm computes them). Both keep BatchNorm's
parameter and buffer names, so checkpoints load into plain BatchNorm layers and back.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """y = Σ_ranks x on every rank; every rank's y feeds its loss, so ∂/∂x is the sum over ranks of ∂loss/∂y."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm{1,2,3}d whose training statistics cover every rank's batch (any input of shape N×C×...)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an N×C×... input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # statistics in fp32 at least
        count = torch.tensor([xf.numel() / max(xf.shape[1], 1)], dtype=xf.dtype, device=x.device)
        totals = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
        n = totals[-1].detach()
        mean = totals[:-1] / n
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        return y.to(x.dtype)


def _to_global(bn: _BatchNorm) -> GlobalBatchNorm:
    out = GlobalBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    like = next((t for t in bn.state_dict().values() if t.is_floating_point()), None)
    if like is not None:  # the layer's own device and precision
        out.to(device=like.device, dtype=like.dtype)
    out.load_state_dict(bn.state_dict())
    out.train(bn.training)
    return out


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of `module` made global over the ranks (torch's SyncBatchNorm on CUDA)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        return _to_global(module)
    for name, child in module.named_children():
        converted = convert_batchnorm(child, device)
        if converted is not child:
            setattr(module, name, converted)
    return module
