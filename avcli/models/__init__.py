"""Video and audio encoders, projection heads, and the registry that builds them by name."""

from avcli.models.heads import AudioVisualModel, Projector
from avcli.models.registry import AUDIO_ENCODERS, VIDEO_ENCODERS, build_model

__all__ = ["AUDIO_ENCODERS", "AudioVisualModel", "Projector", "VIDEO_ENCODERS", "build_model"]
