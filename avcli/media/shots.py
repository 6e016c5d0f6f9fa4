"""Shot boundaries from colour-histogram differences: cheap enough to run on every frame during ingest.

Each frame becomes a normalised colour histogram (8 bins per RGB channel, 24 values summing to 1). A boundary
is declared at frame k when half the L1 distance to frame k-1's histogram — the fraction of pixel mass that
moved between bins, in [0, 1] — exceeds a threshold, and the previous boundary is at least `min_shot_s` back.

The bins are soft: a pixel value shares its weight linearly between the two nearest bin centres. With hard
bins a slow fade or a flat grey ramp jumps a whole bin at once when it crosses a bin edge and reads as a cut;
with soft bins the distance grows in proportion to how far the colours moved.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

BINS = 8


def colour_histogram(image: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Soft RGB histogram of a uint8 H×W×3 image: `3·bins` float32 values summing to 1."""
    pixels = np.asarray(image).reshape(-1, 3).astype(np.float32)
    width = 256.0 / bins
    position = np.clip(pixels / width - 0.5, 0.0, bins - 1.0)  # bin-centre coordinates
    low = np.minimum(position.astype(np.int64), bins - 2)
    upper_weight = position - low
    offsets = np.arange(3) * bins  # channel c uses bins [c·bins, (c+1)·bins)
    index = (low + offsets).ravel()
    hist = np.bincount(index, weights=(1.0 - upper_weight).ravel(), minlength=3 * bins)
    hist += np.bincount(index + 1, weights=upper_weight.ravel(), minlength=3 * bins)
    return (hist / hist.sum()).astype(np.float32)


class ShotDetector:
    """Streaming detector: `push` one histogram per frame (at `fps`), read `boundaries` (seconds) at the end."""

    def __init__(self, fps: float, threshold: float = 0.4, min_shot_s: float = 1.0):
        self.fps, self.threshold, self.min_shot_s = fps, threshold, min_shot_s
        self.boundaries: list[float] = []
        self._previous: np.ndarray | None = None
        self._last_cut_s = 0.0
        self._index = 0

    def push(self, hist: np.ndarray) -> float | None:
        t = self._index / self.fps
        self._index += 1
        previous, self._previous = self._previous, hist
        if previous is None:
            return None
        distance = 0.5 * float(np.abs(hist - previous).sum())
        if distance > self.threshold and t - self._last_cut_s >= self.min_shot_s - 1e-9:
            self._last_cut_s = t
            self.boundaries.append(t)
            return t
        return None


def detect_shots(
    frames_or_hists: Iterable[np.ndarray], fps: float, threshold: float = 0.4, min_shot_s: float = 1.0
) -> list[float]:
    """Boundary times (seconds, excluding 0) of a frame sequence: uint8 H×W×3 images or precomputed histograms."""
    detector = ShotDetector(fps, threshold, min_shot_s)
    for item in frames_or_hists:
        item = np.asarray(item)
        detector.push(item if item.ndim == 1 else colour_histogram(item))
    return detector.boundaries
