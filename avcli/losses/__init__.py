"""Losses: pure functions of tensors and small modules; no I/O, no globals."""

from avcli.losses.infonce import infonce, retrieval_accuracy

__all__ = ["infonce", "retrieval_accuracy"]
