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
    # the loader's CPU tensors ("video_mask", "audio_mask", "labels"): what objectives decide on the host — how
    # many rows hold a pair, which rows to gather — without reading the device copies back
    host: dict | None = None

    @property
    def size(self) -> int:
        return self.video.shape[0]

    def host_mask(self, modality: str) -> torch.Tensor:
        """The B×W mask of `modality` ("video" or "audio") on the CPU."""
        if self.host is not None:
            return self.host[f"{modality}_mask"]
        return getattr(self, f"{modality}_mask").cpu()  # a batch made without the loader (tests, benchmarks)

    def host_label(self, key: str) -> torch.Tensor:
        if self.host is not None:
            return self.host["labels"][key]
        return self.labels[key].cpu()

    def rows(self, rows: slice) -> "TrainBatch":
        """The samples `rows` of the batch (labels and host views sliced alike)."""
        labels = {k: v[rows] for k, v in self.labels.items()}
        host = None
        if self.host is not None:
            host = {"video_mask": self.host["video_mask"][rows], "audio_mask": self.host["audio_mask"][rows],
                    "labels": {k: v[rows] for k, v in self.host["labels"].items()}}
        return TrainBatch(self.video[rows], self.audio[rows], self.video_mask[rows], self.audio_mask[rows],
                          self.items[rows], labels, host)


def on_device(index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A row index computed on the host, on the training device without waiting for it."""
    return index.to(device, non_blocking=True)


class Objective(nn.Module):
    """`forward(model, batch)` → (scalar loss, {health metric: 0-d tensor or float}) for one training step.

    Health figures stay on the device as 0-d tensors (the loop reads them on logging steps only, NaN meaning "not
    measured in this batch"), and whatever an objective decides from the data (row counts, which rows to gather)
    comes from the batch's host view, so a step waits for the device once, in the loop. Similarities, logits and
    soft targets are computed in float32 with autocast off (`avcli.losses.precision`).

    With several processes, `forward` returns this rank's share of the loss (the shares average to the loss of
    the global batch, as DDP averages gradients) and health figures of the global batch or of this rank's rows
    (the loop averages them over ranks). `uses_every_parameter = False` tells DDP that some of the model's or
    the objective's parameters may get no gradient in a step (find_unused_parameters)."""

    uses_every_parameter = True

    def forward(self, model: nn.Module, batch: TrainBatch) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    _epoch_host: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """For objectives with an `epoch` buffer (saved, so a resumed run knows its epoch): set it, and its host copy."""
        self.epoch.fill_(epoch)
        self._epoch_host = epoch

    def host_epoch(self) -> int:
        """The `epoch` buffer as the host knows it: read from the device once after a checkpoint load, not per step."""
        if self._epoch_host is None:
            self._epoch_host = int(self.epoch)
        return self._epoch_host

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._epoch_host = None

    def on_epoch_start(self, epoch: int) -> None:
        """Called before the first step of every epoch; not when a run resumes part-way into an epoch (what was
        set at that epoch's start comes back from the checkpoint)."""

    def end_of_training_stats(self) -> dict:
        """Health figures summarising the whole run (e.g. bank-wide weights), written with the last metrics line."""
        return {}
