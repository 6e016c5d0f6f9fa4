"""`avcli env`: what a lab checks before a long run, as one JSON object on stdout.

The versions of avcli, Python, torch, torchvision, torchaudio, PyAV and FFmpeg's libraries, the decoders the
ingest and the clip reader rely on, the CUDA devices (memory, compute capability, native bf16) and the NCCL
version. Every probe is guarded: on a CPU-only machine, or with a package missing, the field says so instead of
failing.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import typer

from avcli import __version__
from avcli.commands.output import emit

# Decoders by FFmpeg name: H.264, VP9, AAC and FLAC are what datasets and avcli's own training copies use;
# the others are common in movie and TV libraries and in YouTube-sourced datasets.
DECODERS = ("h264", "vp9", "aac", "flac", "hevc", "av1", "mpeg4", "opus", "vorbis", "mp3")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _ffmpeg() -> dict:
    try:
        import av
    except ImportError as exc:
        return {"error": str(exc)}
    libraries = {name: ".".join(map(str, v)) for name, v in sorted(av.library_versions.items())}
    return {"version": getattr(av, "ffmpeg_version_info", None), "libraries": libraries}


def _decoders() -> dict:
    try:
        import av
    except ImportError:
        return {name: False for name in DECODERS}
    available = {}
    for name in DECODERS:
        try:
            av.codec.Codec(name, "r")
            available[name] = True
        except Exception:  # UnknownCodecError (or a build without the codec at all)
            available[name] = False
    return available


def _cuda() -> dict:
    import torch

    info: dict = {"available": False, "runtime": torch.version.cuda, "cudnn": None, "devices": []}
    try:
        info["available"] = bool(torch.cuda.is_available())
        if info["available"]:
            info["cudnn"] = torch.backends.cudnn.version()
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                capability = (props.major, props.minor)
                info["devices"].append({
                    "index": index,
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 2),
                    "capability": f"{props.major}.{props.minor}",
                    # as avcli.train.runtime.has_bf16: native bf16 from compute capability 8.0 (A100, H100, RTX 30xx+)
                    "bf16": capability >= (8, 0),
                })
    except Exception as exc:  # a driver that does not answer: report it rather than fail the whole check
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def _nccl() -> str | None:
    try:
        import torch
        import torch.cuda.nccl

        version = torch.cuda.nccl.version()
    except Exception:  # a CPU-only build of torch has no NCCL
        return None
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def _distributed(backend: str) -> bool:
    try:
        import torch.distributed as dist

        return bool(dist.is_available() and getattr(dist, f"is_{backend}_available")())
    except Exception:
        return False


def environment() -> dict:
    import torch

    return {
        "avcli": __version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "torchaudio": _version("torchaudio"),
        "av": _version("av"),
        "ffmpeg": _ffmpeg(),
        "decoders": _decoders(),
        "cuda": _cuda(),
        "nccl": _nccl(),
        "distributed": {"nccl": _distributed("nccl"), "gloo": _distributed("gloo")},
    }


def register(app: typer.Typer) -> None:
    @app.command("env", help="Print the versions, decoders, CUDA devices and NCCL that a long run depends on "
                 "(one JSON object).")
    def env() -> int:
        emit(environment())
        return 0
