"""Audio encoders: spectrogram B×1×T×F (time × frequency, normalised) → pooled feature B×D.

- AVID's Conv2D-10: conv 7×7/2, then four blocks of two 3×3 convs (no residual), widths w, 2w, 4w, 8w,
  global max pool. `conv2d_10` is w = 64 (512-d); `tiny_conv2d` is w = 16 for CPU runs.
- `resnet18_2d`: torchvision's ResNet-18 with a one-channel stem.
- `vgg_audio`: a VGG-like net of five blocks (two 3×3 conv + BN + ReLU, then 2×2 max pool; widths w, 2w, 4w, 8w,
  8w), global max pool: AVTS's audio subnetwork as METHODS.md §3 describes it ("VGG-like", [U]: the block layout
  is avcli's reading, not checked against the paper's table). w = 64 (512-d); the first block is the stem, blocks
  2–5 are the four stages a multi-layer probe reads.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(True)]


class Conv2D10(nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(1, width, 7, 2))
        widths = [width, 2 * width, 4 * width, 8 * width]
        strides = [2, 2, 2, 1]
        blocks, in_ch = [], width
        for out_ch, stride in zip(widths, strides):
            blocks.append(nn.Sequential(*_conv_bn_relu(in_ch, out_ch, 3, stride), *_conv_bn_relu(out_ch, out_ch, 3, 1)))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.out_dim = widths[-1]

    def stages(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Every stage's output (conv2x..conv5x), or only the first `upto` (the later ones are not computed)."""
        x = self.stem(x)
        outputs = []
        for block in list(self.blocks)[:upto]:
            x = block(x)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor, upto: int | None = None):
        """The pooled feature; with `upto`, the first `upto` stage maps (`stages`) through the module's call, so
        that forward hooks (channels_last) and torch.compile apply to them too."""
        if upto is not None:
            return self.stages(x, upto)
        return torch.amax(self.stages(x)[-1], dim=(2, 3))


class ResNet18Audio(nn.Module):
    def __init__(self):
        super().__init__()
        from torchvision.models import resnet18

        self.net = resnet18(weights=None)
        self.net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        self.net.fc = nn.Identity()
        self.out_dim = 512

    def stages(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Every stage's output (conv2x..conv5x), or only the first `upto` (the later ones are not computed)."""
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        outputs = []
        for layer in (n.layer1, n.layer2, n.layer3, n.layer4)[:upto]:
            x = layer(x)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor, upto: int | None = None):
        """The pooled feature; with `upto`, the first `upto` stage maps (`stages`) through the module's call."""
        if upto is not None:
            return self.stages(x, upto)
        return self.net(x)


class VGGAudio(nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width, 8 * width]

        def block(in_ch: int, out_ch: int) -> nn.Sequential:
            return nn.Sequential(*_conv_bn_relu(in_ch, out_ch, 3, 1), *_conv_bn_relu(out_ch, out_ch, 3, 1),
                                 nn.MaxPool2d(2, ceil_mode=True))

        self.stem = block(1, widths[0])
        self.blocks = nn.ModuleList(block(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out_dim = widths[-1]

    def stages(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Every stage's output (blocks 2–5), or only the first `upto` (the later ones are not computed)."""
        x = self.stem(x)
        outputs = []
        for block in list(self.blocks)[:upto]:
            x = block(x)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor, upto: int | None = None):
        """The pooled feature; with `upto`, the first `upto` stage maps (`stages`) through the module's call."""
        if upto is not None:
            return self.stages(x, upto)
        return torch.amax(self.stages(x)[-1], dim=(2, 3))


def build_audio_encoder(name: str, width: int | None = None) -> nn.Module:
    if name == "conv2d_10":
        return Conv2D10(width or 64)
    if name == "tiny_conv2d":
        return Conv2D10(width or 16)
    if name == "resnet18_2d":
        if width not in (None, 64):
            raise ValueError("resnet18_2d is torchvision's fixed-width model; width must be 64 or unset")
        return ResNet18Audio()
    if name == "vgg_audio":
        return VGGAudio(width or 64)
    raise KeyError(name)
