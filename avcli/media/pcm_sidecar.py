"""The audio sidecar of a training copy: the copy's mono 16-bit samples again, as a plain WAV file beside it.

Decoding 2 s of the copy's FLAC costs a seek and about twenty packets through the decoder, more than decoding
the video clip that goes with it. The same samples stored uncompressed are read by sample offset from a memory
file: an audio window is one read. The price is disk space: 48 kB per second at 24 kHz (173 MB per hour), about
twice the FLAC track. `avcli ingest --no-audio-sidecar` skips it, and readers then decode the FLAC, which holds
exactly the same samples. Windows are read with `pread`, not a memory map: a map's touched pages would count in
every worker's resident memory, up to whole files for movies.

The file is a canonical 44-byte-header PCM WAV (mono, s16le) that any audio tool opens.
"""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path

import numpy as np

SUFFIX = ".wav"


def sidecar_path(copy: str | Path) -> Path:
    """Where the sidecar of a training copy lives: same name, `.wav`."""
    return Path(copy).with_suffix(SUFFIX)


class PcmWriter:
    """Appends int16 mono samples to a WAV file; the header's lengths are filled in by `close`."""

    def __init__(self, path: str | Path, sample_rate: int):
        self.file = wave.open(str(path), "wb")
        self.file.setnchannels(1)
        self.file.setsampwidth(2)
        self.file.setframerate(sample_rate)

    def write(self, samples: np.ndarray) -> None:
        self.file.writeframesraw(np.ascontiguousarray(samples, dtype="<i2").tobytes())

    def close(self) -> None:
        self.file.close()


class PcmSidecar:
    """Random access to a sidecar's samples: `read(start, stop)` → float32 in [-1, 1), zeros outside the file."""

    HEADER = 44

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.fd = os.open(self.path, os.O_RDONLY)
        header = os.pread(self.fd, self.HEADER, 0)
        fields = struct.unpack("<4sI4s4sIHHIIHH4sI", header) if len(header) == self.HEADER else None
        if fields is None or (fields[0], fields[2], fields[3], fields[4], fields[5], fields[6], fields[10], fields[11]) != (
            b"RIFF", b"WAVE", b"fmt ", 16, 1, 1, 16, b"data"
        ):
            self.close()
            raise ValueError(f"{self.path}: not a mono 16-bit PCM WAV sidecar written by avcli ingest")
        self.sample_rate = fields[7]
        # the header's data size, but never past the end of the file (a copy truncated on disk reads as shorter)
        self.count = min(fields[12], os.fstat(self.fd).st_size - self.HEADER) // 2

    def __len__(self) -> int:
        return self.count

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros(max(0, stop - start), np.float32)
        lo, hi = max(start, 0), min(stop, self.count)
        if hi > lo:
            raw = os.pread(self.fd, 2 * (hi - lo), self.HEADER + 2 * lo)
            got = np.frombuffer(raw, dtype="<i2")
            out[lo - start : lo - start + len(got)] = got
            out *= 1.0 / 32768.0
        return out

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
