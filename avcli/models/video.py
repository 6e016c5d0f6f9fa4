"""Video encoders: clip tensor B×3×T×H×W (normalised float) → pooled feature B×D.

- torchvision's `r2plus1d_18`, `mc3_18`, `r3d_18` (the standard variants, 512-d, global average pool), so
  exported weights load into plain torchvision;
- AVID's R(2+1)D (full 3D stem, no mid-channel expansion, global max pool) at any width and depth;
- `tiny_r2plus1d` for CPU runs on small frames (see TinyR2Plus1D).

Every encoder has `out_dim` and `stages(x)`, which returns the feature map of each stage (conv2x..conv5x)
for multi-layer probes.
"""

from __future__ import annotations

import torch
from torch import nn


class R2Plus1DBlock(nn.Module):
    """Residual block with each 3×3×3 conv factorised into a 1×3×3 spatial and a 3×1×1 temporal conv
    (`temporal=False` makes the temporal convs 1×1×1: a purely spatial block)."""

    def __init__(self, in_ch: int, out_ch: int, stride: tuple[int, int, int] = (1, 1, 1), temporal: bool = True):
        super().__init__()
        t_stride, s_stride = stride[0], stride[1]
        kt = 3 if temporal else 1
        self.spatial1 = nn.Conv3d(in_ch, out_ch, (1, 3, 3), (1, s_stride, s_stride), (0, 1, 1), bias=False)
        self.bn_s1 = nn.BatchNorm3d(out_ch)
        self.temporal1 = nn.Conv3d(out_ch, out_ch, (kt, 1, 1), (t_stride, 1, 1), (kt // 2, 0, 0), bias=False)
        self.bn_t1 = nn.BatchNorm3d(out_ch)
        self.spatial2 = nn.Conv3d(out_ch, out_ch, (1, 3, 3), 1, (0, 1, 1), bias=False)
        self.bn_s2 = nn.BatchNorm3d(out_ch)
        self.temporal2 = nn.Conv3d(out_ch, out_ch, (kt, 1, 1), 1, (kt // 2, 0, 0), bias=False)
        self.bn_out = nn.BatchNorm3d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        needs_projection = in_ch != out_ch or any(s != 1 for s in stride)
        self.shortcut = nn.Conv3d(in_ch, out_ch, 1, stride, bias=False) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn_s1(self.spatial1(x)))
        y = self.relu(self.bn_t1(self.temporal1(y)))
        y = self.relu(self.bn_s2(self.spatial2(y)))
        y = self.temporal2(y)
        return self.relu(self.bn_out(y + self.shortcut(x)))


class AvidR2Plus1D(nn.Module):
    """AVID-CMA's R(2+1)D: a 3×7×7/2 stem and max pool, then stages of widths w, 2w, 4w, 8w with `blocks`
    residual blocks each, downsampling space and time by 2 from the second stage on, global max pool."""

    def __init__(self, width: int = 64, blocks: tuple[int, int, int, int] = (2, 2, 2, 2)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        self.stages_ = _stages(width, blocks, temporal=(True, True, True, True), time_strides=(1, 2, 2, 2))
        self.out_dim = 8 * width

    def stages(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Every stage's output (conv2x..conv5x), or only the first `upto` (the later ones are not computed)."""
        x = self.stem(x)
        outputs = []
        for stage in list(self.stages_)[:upto]:
            x = stage(x)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor, upto: int | None = None):
        """The pooled feature; with `upto`, the first `upto` stage maps (`stages`) through the module's call, so
        that forward hooks (channels_last) and torch.compile apply to them too."""
        if upto is not None:
            return self.stages(x, upto)
        return torch.amax(self.stages(x)[-1], dim=(2, 3, 4))


class TinyR2Plus1D(AvidR2Plus1D):
    """R(2+1)D for CPU runs on small frames (48-64 px): a 1×5×5 stem at full resolution and a 2×2 max pool,
    one block per stage, and temporal convs only in the last two stages. Temporal convs on early, high-
    resolution maps smear a moving object's shape across frames; like SlowFast's slow pathway, this keeps
    time modelling for the coarse stages, which trains far faster on shape-and-motion data than AVID's layout."""

    def __init__(self, width: int = 16):
        nn.Module.__init__(self)
        self.stem = nn.Sequential(
            nn.Conv3d(3, width, (1, 5, 5), 1, (0, 2, 2), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 2, 2)),
        )
        self.stages_ = _stages(width, (1, 1, 1, 1), temporal=(False, False, True, True), time_strides=(1, 1, 2, 2))
        self.out_dim = 8 * width


def _stages(width, blocks, temporal, time_strides) -> nn.ModuleList:
    stages, in_ch = [], width
    for i, (n, uses_time, t_stride) in enumerate(zip(blocks, temporal, time_strides)):
        out_ch = width * 2**i
        stride = (t_stride, 1, 1) if i == 0 else (t_stride, 2, 2)
        layers = [R2Plus1DBlock(in_ch, out_ch, stride, uses_time)]
        layers += [R2Plus1DBlock(out_ch, out_ch, temporal=uses_time) for _ in range(n - 1)]
        stages.append(nn.Sequential(*layers))
        in_ch = out_ch
    return nn.ModuleList(stages)


class TorchvisionVideoResNet(nn.Module):
    """torchvision's video ResNets without the classifier; state dict keys stay torchvision's (under `net.`)."""

    def __init__(self, name: str):
        super().__init__()
        from torchvision.models import video as tv_video

        self.net = getattr(tv_video, name)(weights=None)
        self.net.fc = nn.Identity()
        self.out_dim = 512

    def stages(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Every stage's output (conv2x..conv5x), or only the first `upto` (the later ones are not computed)."""
        x = self.net.stem(x)
        outputs = []
        for layer in (self.net.layer1, self.net.layer2, self.net.layer3, self.net.layer4)[:upto]:
            x = layer(x)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor, upto: int | None = None):
        """The pooled feature; with `upto`, the first `upto` stage maps (`stages`) through the module's call."""
        if upto is not None:
            return self.stages(x, upto)
        return self.net(x)


def build_video_encoder(name: str, width: int | None = None) -> nn.Module:
    if name in ("r2plus1d_18", "mc3_18", "r3d_18"):
        if width not in (None, 64):
            raise ValueError(f"{name} is torchvision's fixed-width model; width must be 64 or unset")
        return TorchvisionVideoResNet(name)
    if name == "avid_r2plus1d_18":
        return AvidR2Plus1D(width or 64, (2, 2, 2, 2))
    if name == "tiny_r2plus1d":
        return TinyR2Plus1D(width or 16)
    raise KeyError(name)
