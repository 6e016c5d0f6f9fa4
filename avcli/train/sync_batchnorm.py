"""Batch norm over the global batch when several processes train (`training.sync_batchnorm`).

With per-process statistics, N processes × B clips normalise differently from one process × N·B clips, so the
loss is not the one-process loss of the global batch. `GlobalBatchNorm` computes the statistics of the global
batch with all-reduces, on CUDA (NCCL) and CPU (gloo) alike. torch's own SyncBatchNorm is not used, for three
reasons that matter on a lab's GPUs:

- every rank must send the same dtype: for a rank with no rows (the temporal method's anchors can be empty on
  one rank) SyncBatchNorm builds zero statistics in the input's dtype (bf16 under autocast) while the others
  send fp32, which breaks the collective; here statistics are always float32 (float64 for float64 inputs);
- SyncBatchNorm reads the gathered counts on the host in every layer (a device sync per layer and step);
  nothing here leaves the device;
- an empty rank still takes part, with a count of 0, in both passes.

Forward: one all-reduce of [Σx, n] per layer, then one of Σ(x − μ)² (two passes: exact variance, no
cancellation). Backward: one all-reduce of [Σdy, Σdy·(x − μ)]. Only the input is saved for backward, as in a
plain BatchNorm. Parameter and buffer names are BatchNorm's, so checkpoints load into plain BatchNorm layers
and back.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def _stat_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class _GlobalBatchNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        dtype = _stat_dtype(x)
        channels = x.shape[1]
        count = x.numel() // max(channels, 1)
        totals = torch.cat([x.sum(dims, dtype=dtype), torch.full((1,), float(count), dtype=dtype, device=x.device)])
        dist.all_reduce(totals)
        n = totals[-1:]
        mean = totals[:channels] / n.clamp(min=1)
        centred = x.to(dtype) - mean.view(shape)
        var = (centred * centred).sum(dims)
        dist.all_reduce(var)
        var = var / n.clamp(min=1)
        invstd = torch.rsqrt(var + eps)
        y = centred * invstd.view(shape)
        if weight is not None:
            y = y * weight.to(dtype).view(shape) + bias.to(dtype).view(shape)
        ctx.save_for_backward(x, weight, mean, invstd, n)
        ctx.mark_non_differentiable(mean, var, n)
        return y.to(x.dtype), mean, var, n

    @staticmethod
    def backward(ctx, grad_y, _mean, _var, _n):
        x, weight, mean, invstd, n = ctx.saved_tensors
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        dtype = mean.dtype
        channels = x.shape[1]
        dy = grad_y.to(dtype)
        xmu = x.to(dtype) - mean.view(shape)
        local = torch.cat([dy.sum(dims), (dy * xmu).sum(dims)])
        sums = local.clone()
        dist.all_reduce(sums)
        mean_dy = sums[:channels] / n.clamp(min=1)
        mean_dy_xmu = sums[channels:] / n.clamp(min=1)
        scale = invstd if weight is None else invstd * weight.to(dtype)
        grad_x = (dy - mean_dy.view(shape) - xmu * (invstd * invstd * mean_dy_xmu).view(shape)) * scale.view(shape)
        grad_weight = grad_bias = None
        if weight is not None:  # this rank's part; DDP averages parameter gradients over the ranks
            grad_weight = (local[channels:] * invstd).to(weight.dtype)
            grad_bias = local[:channels].to(weight.dtype)
        return grad_x.to(x.dtype), grad_weight, grad_bias, None


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm{1,2,3}d whose training statistics cover every rank's batch (any input of shape N×C×...)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an N×C×... input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        weight, bias = (self.weight, self.bias) if self.affine else (None, None)
        y, mean, var, n = _GlobalBatchNormFn.apply(x, weight, bias, self.eps)
        if self.track_running_stats:
            with torch.no_grad():  # device-side only: no read of n or of the statistics on the host
                self.num_batches_tracked.add_(1)
                if self.momentum is None:  # cumulative average
                    momentum = 1.0 / self.num_batches_tracked.to(self.running_mean.dtype)
                else:
                    momentum = torch.tensor(self.momentum, dtype=self.running_mean.dtype, device=x.device)
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return y


def _to_global(bn: _BatchNorm) -> GlobalBatchNorm:
    out = GlobalBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    like = next((t for t in bn.state_dict().values() if t.is_floating_point()), None)
    if like is not None:  # the layer's own device and precision
        out.to(device=like.device, dtype=like.dtype)
    out.load_state_dict(bn.state_dict())
    out.train(bn.training)
    return out


def convert_batchnorm(module: nn.Module, device: torch.device | None = None) -> nn.Module:
    """Every BatchNorm of `module` (torch's SyncBatchNorm included) made global over the ranks, on any device
    (`device` is accepted for older callers and ignored)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        return _to_global(module)
    for name, child in module.named_children():
        converted = convert_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module
