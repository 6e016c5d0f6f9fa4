"""Encoders and heads: output shapes, stage features, normalised projections."""

from __future__ import annotations

import pytest
import torch

from avcli.models import AUDIO_ENCODERS, VIDEO_ENCODERS, build_model
from avcli.models.audio import build_audio_encoder
from avcli.models.video import build_video_encoder
from avcli.recipe.schema import Model


@pytest.mark.parametrize("name", sorted(VIDEO_ENCODERS))
def test_video_encoders_pool_to_out_dim(name):
    encoder = build_video_encoder(name, 8 if name.startswith(("tiny", "avid")) else None).eval()
    with torch.no_grad():
        out = encoder(torch.randn(2, 3, 4, 32, 32))
        stages = encoder.stages(torch.randn(1, 3, 4, 32, 32))
    assert out.shape == (2, encoder.out_dim)
    assert len(stages) == 4 and stages[-1].shape[1] == encoder.out_dim


@pytest.mark.parametrize("name", sorted(AUDIO_ENCODERS))
def test_audio_encoders_pool_to_out_dim(name):
    encoder = build_audio_encoder(name, 8 if name != "resnet18_2d" else None).eval()
    with torch.no_grad():
        out = encoder(torch.randn(2, 1, 100, 40))
    assert out.shape == (2, encoder.out_dim)


def test_width_sets_the_feature_size():
    assert build_video_encoder("tiny_r2plus1d", 12).out_dim == 96
    assert build_audio_encoder("conv2d_10").out_dim == 512
    with pytest.raises(ValueError):
        build_video_encoder("r2plus1d_18", 16)


def test_projections_are_unit_length():
    model = build_model(Model.model_validate({
        "video": {"name": "tiny_r2plus1d", "width": 8}, "audio": {"name": "tiny_conv2d", "width": 8},
        "projector": {"hidden_dim": 16, "out_dim": 8},
    })).eval()
    with torch.no_grad():
        v = model.embed_video(torch.randn(3, 3, 4, 32, 32))
        a = model.embed_audio(torch.randn(3, 1, 100, 32))
    assert v.shape == a.shape == (3, 8)
    assert torch.allclose(v.norm(dim=1), torch.ones(3)) and torch.allclose(a.norm(dim=1), torch.ones(3))


def test_projector_depth_follows_avid_proj_dim():
    """layers: 3 is AVID-CMA's proj_dim [512, 512, 128] (models/av_wrapper.py Head): 512→512, ReLU, 512→512, ReLU,
    512→128."""
    model = build_model(Model.model_validate({
        "video": {"name": "tiny_r2plus1d", "width": 64}, "audio": {"name": "tiny_conv2d", "width": 64},
        "projector": {"hidden_dim": 512, "out_dim": 128, "layers": 3},
    }))
    linears = [(m.in_features, m.out_features) for m in model.video_head.net if isinstance(m, torch.nn.Linear)]
    assert linears == [(512, 512), (512, 512), (512, 128)]
    assert [type(m).__name__ for m in model.video_head.net] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
