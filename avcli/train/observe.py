"""What a training job says about itself: throughput since the last log line, and optional TensorBoard events.

The figures come from rank 0's clock (every rank steps in lockstep, so its step time is the job's); samples are
counted over the whole job (batch_size × processes per micro-batch).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from avcli.errors import UsageError
from avcli.train.runtime import peak_memory_gb


class Throughput:
    """Samples, steps and the time spent waiting for the data loader since the last `figures()`."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        self.reset()

    def reset(self) -> None:
        self.t0 = time.perf_counter()
        self.data = 0.0
        self.samples = 0
        self.steps = 0
        self._asked = self.t0

    def waiting(self) -> None:
        """The loop asks the loader for the next batch."""
        self._asked = time.perf_counter()

    def arrived(self) -> None:
        self.data += time.perf_counter() - self._asked

    def stepped(self, samples: int) -> None:
        self.steps += 1
        self.samples += samples

    def figures(self, device: torch.device) -> dict:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        return {
            "samples_per_s": round(self.samples / elapsed, 2),
            "samples_per_s_per_device": round(self.samples / elapsed / self.world_size, 2),
            "step_time_s": round(elapsed / max(self.steps, 1), 4),
            "data_time_frac": round(self.data / elapsed, 3),
            "peak_mem_gb": round(peak_memory_gb(device), 3),
        }


def log_line(record: dict, total_steps: int) -> str:
    return (
        f"step {record['step']}/{total_steps} epoch {record['epoch']} loss {record['loss']:.4f} lr {record['lr']:.2e}"
        f" | {record['samples_per_s']:.1f} samples/s ({record['samples_per_s_per_device']:.1f} per device)"
        f" | step {record['step_time_s']:.3f} s, data wait {100 * record['data_time_frac']:.0f}%"
        f" | peak mem {record['peak_mem_gb']:.2f} GB"
        + (f" | {record['nonfinite_steps']} non-finite steps skipped" if record.get("nonfinite_steps") else "")
    )


def require_tensorboard():
    """torch's SummaryWriter class, or a clear error when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError(
            "training.tensorboard: the tensorboard package is not installed; pip install tensorboard, "
            "or set training.tensorboard: false (metrics.jsonl is always written)"
        ) from None
    return SummaryWriter


def tensorboard_writer(run_dir: Path, resume_step: int | None):
    """A SummaryWriter on RUN/tensorboard (`training.tensorboard: true`); on resume, events after the checkpoint's
    step are dropped, as metrics.jsonl drops its lines."""
    SummaryWriter = require_tensorboard()
    return SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=None if resume_step is None else resume_step + 1)


def write_scalars(writer, record: dict) -> None:
    for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(key, value, record["step"])
    writer.flush()
