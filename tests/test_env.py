"""`avcli env`: one JSON object with what a long run depends on, on CPU-only machines and (pretend) GPUs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import av
import torch
import torch.cuda.nccl

from avcli import __version__
from avcli.cli import run
from avcli.commands import env


def test_env_prints_one_json_object_with_the_versions_and_decoders(capsys):
    assert run(["env"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    info = json.loads(out)
    assert info["avcli"] == __version__
    assert info["torch"] == torch.__version__
    assert info["av"] == av.__version__
    assert info["torchvision"] and info["torchaudio"]
    assert info["ffmpeg"]["libraries"]["libavcodec"] == ".".join(map(str, av.library_versions["libavcodec"]))
    # the decoders ingest and the clip reader need are in every PyAV wheel
    for name in ("h264", "vp9", "aac", "flac"):
        assert info["decoders"][name] is True
    assert info["cuda"]["available"] == torch.cuda.is_available()
    assert len(info["cuda"]["devices"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert info["distributed"]["gloo"] is True


def test_unknown_decoders_are_reported_missing(monkeypatch):
    monkeypatch.setattr(env, "DECODERS", ("h264", "no_such_codec"))
    assert env._decoders() == {"h264": True, "no_such_codec": False}


def test_cuda_devices_report_memory_capability_and_native_bf16(monkeypatch):
    devices = [
        SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * 2**30, major=9, minor=0),
        SimpleNamespace(name="Tesla V100-SXM2-32GB", total_memory=32 * 2**30, major=7, minor=0),
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(devices))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: devices[i])
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    cuda = env._cuda()
    assert cuda["available"] is True and cuda["cudnn"] == 91000
    assert cuda["devices"] == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_gib": 80.0, "capability": "9.0", "bf16": True},
        {"index": 1, "name": "Tesla V100-SXM2-32GB", "memory_gib": 32.0, "capability": "7.0", "bf16": False},
    ]


def test_a_driver_that_fails_and_a_build_without_nccl_are_reported_not_raised(monkeypatch):
    def broken():
        raise RuntimeError("CUDA driver initialization failed")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", broken)
    cuda = env._cuda()
    assert cuda["devices"] == [] and "driver initialization failed" in cuda["error"]

    monkeypatch.setattr(torch.cuda.nccl, "version", broken)
    assert env._nccl() is None
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 21, 5))
    assert env._nccl() == "2.21.5"
