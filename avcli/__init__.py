"""avcli: self-supervised audio-visual representation learning from the command line."""

__version__ = "0.1.0"
