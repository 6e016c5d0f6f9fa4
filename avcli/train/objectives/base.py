"""What every method's objective sees and must provide.

A `TrainBatch` holds every window slot of a collated batch, already augmented, normalised and on the training
device: xID-style methods read slot 0, the temporal method reads all three. An `Objective` is an `nn.Module`, so
whatever state a method keeps between steps — memory banks, the partition estimate Z, feature queues, agreement
statistics, extra heads — moves with `.to(device)`, is trained by the same optimiser as the encoders (its
parameters) and is saved in `train_state.pt` (its `state_dict`), so a resumed run continues with it intact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TrainBatch:
    video: torch.Tensor  # B×Wv×3×T×H×W, normalised
    audio: torch.Tensor  # B×Wa×1×frames×bins, normalised spectrograms
    video_mask: torch.Tensor  # B×Wv bool: slot holds a real clip (False: zeros the sampler could not place)
    audio_mask: torch.Tensor  # B×Wa bool
    items: torch.Tensor  # B×W catalog indices of every window, on the device
    labels: dict  # the sampler's labels, collated (tensors on the device, strings as lists)

    @property
    def size(self) -> int:
        return self.video.shape[0]

    def rows(self, rows: slice) -> "TrainBatch":
        """The samples `rows` of the batch (labels sliced alike)."""
        labels = {k: v[rows] for k, v in self.labels.items()}
        return TrainBatch(self.video[rows], self.audio[rows], self.video_mask[rows], self.audio_mask[rows],
                          self.items[rows], labels)


class Objective(nn.Module):
    """`forward(model, batch)` → (scalar loss, {health metric: float}) for one training step.

    With several processes, `forward` returns this rank's share of the loss (the shares average to the loss of
    the global batch, as DDP averages gradients) and health figures of the global batch or of this rank's rows
    (the loop averages them over ranks). `uses_every_parameter = False` tells DDP that some of the model's or
    the objective's parameters may get no gradient in a step (find_unused_parameters)."""

    uses_every_parameter = True

    def forward(self, model: nn.Module, batch: TrainBatch) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Called before the first step of every epoch; not when a run resumes part-way into an epoch (what was
        set at that epoch's start comes back from the checkpoint)."""

    def end_of_training_stats(self) -> dict:
        """Health figures summarising the whole run (e.g. bank-wide weights), written with the last metrics line."""
        return {}
