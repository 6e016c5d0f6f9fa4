"""Encoders by name, as recipes refer to them (`model.video.name`, `model.audio.name`)."""

from __future__ import annotations

from torch import nn

from avcli.models.audio import build_audio_encoder
from avcli.models.heads import AudioVisualModel
from avcli.models.video import build_video_encoder

VIDEO_ENCODERS = {
    "r2plus1d_18": "torchvision R(2+1)D-18, 512-d",
    "mc3_18": "torchvision MC3-18, 512-d",
    "r3d_18": "torchvision R3D-18, 512-d",
    "avid_r2plus1d_18": "AVID R(2+1)D-18 (3D stem, max pool), width w → 8w-d",
    "tiny_r2plus1d": "AVID R(2+1)D with one block per stage, width 16 by default (CPU runs)",
}
AUDIO_ENCODERS = {
    "conv2d_10": "AVID Conv2D-10, width w → 8w-d (512-d at w = 64)",
    "tiny_conv2d": "AVID Conv2D-10 at width 16 by default (CPU runs)",
    "resnet18_2d": "torchvision ResNet-18 with a one-channel stem, 512-d",
    "vgg_audio": "VGG-like 5-block net (AVTS's audio subnetwork as METHODS.md §3 reads it [U]), width w → 8w-d",
}


def build_model(cfg) -> nn.Module:
    """An AudioVisualModel from the recipe's `model:` section (avcli.recipe.schema.Model)."""
    video = build_video_encoder(cfg.video.name, cfg.video.width)
    audio = build_audio_encoder(cfg.audio.name, cfg.audio.width)
    return AudioVisualModel(video, audio, cfg.projector.hidden_dim, cfg.projector.out_dim, cfg.projector.batch_norm,
                            cfg.projector.layers)
