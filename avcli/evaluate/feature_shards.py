"""Extracted features on disk as they are made: a folder of safetensors shards and a JSON manifest.

One folder per cache entry (FeatureCache: checkpoint, task, split, part, clip plan, feature name) holds shards
`FIRST.safetensors` of V_i×K×D float32 ("features": the videos FIRST.. of the task's list, in order) and
`manifest.json`, which lists the shards written so far and says `complete` once the last one is there.

- Memory: extraction holds one shard per feature (SHARD_BYTES over all the features of one pass) besides the
  model, whatever the number of videos; `ShardedFeature.chunks()` reads one shard at a time.
- Interruption: a shard is written under a temporary name, flushed and renamed, and only then listed in the
  manifest, itself replaced the same way. A run killed at any point (Ctrl-C, SIGTERM, kill -9) leaves a manifest
  of whole shards, and the next run with the same key starts after the last shard listed. A shard on disk but not
  listed (killed between its rename and the manifest's) is written again; a listed shard whose size or header is
  not the manifest's (truncated, damaged) is dropped with the shards after it and redone.
- The same numbers: a video's clips depend only on its path and the plan (clip_sampling), and shards end on the
  loader's batch boundaries (a multiple of its videos per batch), so a resumed extraction encodes the very batches
  an uninterrupted one encodes, and its features are bit for bit the same. (A resume with another --batch-clips
  may cut batches elsewhere; the cache key never included the batch size, as batching only moves the last bits.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from avcli.errors import AvcliError, UsageError
from avcli.log import get_logger

log = get_logger("probe")

SHARD_BYTES = 64 << 20  # per extraction pass, over all its features: bounded memory, few files (UCF101 linear: 3)
MANIFEST = "manifest.json"
FORMAT = "avcli-feature-shards"
VERSION = 1


def shard_bytes() -> int:
    """SHARD_BYTES, or $AVCLI_FEATURE_SHARD_MB (smaller shards bound memory tighter and lose less to a kill)."""
    value = os.environ.get("AVCLI_FEATURE_SHARD_MB")
    if not value:
        return SHARD_BYTES
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = 0.0
    if not megabytes > 0:
        raise UsageError(f"AVCLI_FEATURE_SHARD_MB={value!r}: give a positive number of MiB, or unset it for "
                         f"{SHARD_BYTES >> 20}")
    return max(1, int(megabytes * (1 << 20)))


def as_tensor(feature) -> torch.Tensor:
    """The whole V×K×D feature in memory (what the scikit-learn probes need): a tensor as it is, or a feature on
    disk materialised."""
    return feature if isinstance(feature, torch.Tensor) else feature.tensor()


def feature_chunks(feature) -> Iterator[torch.Tensor]:
    """V_i×K×D blocks of a feature in order: a tensor is one block (an N×D one as N×1×D); a feature on disk, its
    shards."""
    if isinstance(feature, torch.Tensor):
        yield feature.unsqueeze(1) if feature.dim() == 2 else feature
    else:
        yield from feature.chunks()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _replace_atomically(partial: Path, path: Path) -> None:
    """Data on disk before the name points at it: a crash (not only a kill) leaves the old file or the new."""
    _fsync(partial)
    os.replace(partial, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ShardedFeature:
    """A V×K×D float32 feature on disk: `shape`, `chunks()` (V_i×K×D tensors in order, one shard in memory at a
    time: what the torch classifiers stream), `tensor()` / `numpy()` (all of it in memory, on demand)."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder = Path(folder)
        self.shape = (int(manifest["videos"]), int(manifest["clips"]), int(manifest["dim"]))
        self.shards = list(manifest["shards"])

    def __len__(self) -> int:
        return self.shape[0]

    def chunks(self) -> Iterator[torch.Tensor]:
        for shard in self.shards:
            yield _load_shard(self.folder, shard, self.shape)

    def tensor(self) -> torch.Tensor:
        out = torch.empty(self.shape, dtype=torch.float32)  # filled in place: no second copy while joining
        for shard, chunk in zip(self.shards, self.chunks()):
            out[shard["first"] : shard["first"] + shard["videos"]] = chunk
        return out

    def numpy(self):
        return self.tensor().numpy()


class SingleFileFeature:
    """A feature cached by earlier versions as one `KEY-NAME.safetensors` file: still read, since its key and its
    numbers are those of today's extraction; `chunks()` reads it SHARD_BYTES of rows at a time, so streaming it
    is as bounded as a sharded one."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with safe_open(str(self.path), "pt") as handle:
            shape = handle.get_slice("features").get_shape()
        if len(shape) != 3:
            raise ValueError(f"features of shape {shape}, not V×K×D")
        self.shape = tuple(int(s) for s in shape)

    def __len__(self) -> int:
        return self.shape[0]

    def chunks(self) -> Iterator[torch.Tensor]:
        step = max(1, shard_bytes() // max(1, 4 * self.shape[1] * self.shape[2]))
        with safe_open(str(self.path), "pt") as handle:
            rows = handle.get_slice("features")
            for lo in range(0, self.shape[0], step):
                yield rows[lo : lo + step].float()

    def tensor(self) -> torch.Tensor:
        return load_file(str(self.path))["features"].float()

    def numpy(self):
        return self.tensor().numpy()


def _load_shard(folder: Path, shard: dict, shape: tuple[int, int, int]) -> torch.Tensor:
    path = folder / shard["file"]
    try:
        tensor = load_file(str(path))["features"]
    except Exception as exc:  # removed or damaged since its manifest was read
        raise AvcliError(f"feature shard {path} cannot be read ({exc}); delete {folder} and probe again") from exc
    if tuple(tensor.shape) != (shard["videos"], *shape[1:]) or tensor.dtype != torch.float32:
        raise AvcliError(f"feature shard {path} holds {tuple(tensor.shape)} {tensor.dtype}, its manifest says "
                           f"{(shard['videos'], *shape[1:])} float32; delete {folder} and probe again")
    return tensor


def _shard_intact(folder: Path, shard: dict, clips: int, dim: int) -> bool:
    """The listed size, and a safetensors header of the listed shape (reading the header, not the data)."""
    path = folder / shard["file"]
    try:
        if path.stat().st_size != shard["bytes"]:
            return False
        with safe_open(str(path), "pt") as handle:
            return tuple(handle.get_slice("features").get_shape()) == (shard["videos"], clips, dim)
    except Exception:  # missing, unreadable, not safetensors: redone, not fatal
        return False


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest with its listed shards cut at the first one that is not intact (None when there is
    none, or it is not one of ours)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ValueError(f"format {manifest.get('format')} version {manifest.get('version')}")
        shards, expected = [], 0
        for shard in manifest["shards"]:
            if shard["first"] != expected or not _shard_intact(path.parent, shard, manifest["clips"], manifest["dim"]):
                log.warning("feature shard %s is incomplete or damaged: it is extracted again", path.parent /
                            shard["file"])
                break
            shards.append(shard)
            expected += shard["videos"]
    except Exception as exc:  # a damaged entry is recomputed, not fatal (as the single-file cache did)
        log.warning("ignoring unreadable feature manifest %s (%s); its features are extracted again", path, exc)
        return None
    manifest["shards"] = shards
    manifest["done"] = expected
    manifest["complete"] = bool(manifest.get("complete")) and expected == manifest["videos"]
    return manifest


def read_complete(folder: Path) -> ShardedFeature | None:
    manifest = read_manifest(folder)
    if manifest is None or not manifest["complete"]:
        return None
    return ShardedFeature(folder, manifest)


class _ShardWriter:
    """One feature's folder: resumes after its intact shards, buffers rows until a shard is full, writes it."""

    def __init__(self, folder: Path, name: str, about: dict, videos: int, clips: int):
        self.folder, self.name, self.about = Path(folder), name, about
        self.videos, self.clips = videos, clips
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_dead_partials()
        manifest = read_manifest(self.folder)
        if manifest is not None and (manifest["videos"], manifest["clips"]) != (videos, clips):
            log.warning("feature manifest %s is for %d videos × %d clips, not %d × %d: extracting again",
                        self.folder / MANIFEST, manifest["videos"], manifest["clips"], videos, clips)
            manifest = None
        self.shards = manifest["shards"] if manifest else []
        self.done = manifest["done"] if manifest else 0  # videos in listed shards
        self.dim = manifest["dim"] if manifest and self.shards else None
        self.shard_videos = manifest.get("shard_videos") if manifest and self.shards else None
        self.buffer: torch.Tensor | None = None
        self.filled = self.done  # videos in listed shards + the buffer

    def _remove_dead_partials(self) -> None:
        """Temporary files of killed runs (`.NAME.PID.partial`); a live writer's (another probe) are its own."""
        for path in self.folder.glob(".*.partial"):
            try:
                pid = int(path.name.rsplit(".", 2)[-2])
            except ValueError:
                continue
            if not _pid_alive(pid) or pid == os.getpid():
                path.unlink(missing_ok=True)

    def add(self, first: int, rows: torch.Tensor) -> None:
        """Rows of videos first.. (contiguous with earlier calls); those already in a listed shard are skipped."""
        if self.dim is None:
            self.dim = rows.shape[2]
        elif rows.shape[2] != self.dim:
            raise AvcliError(f"{self.folder}: features of width {rows.shape[2]}, its manifest says {self.dim}; "
                               f"delete the folder and probe again")
        lo = max(0, self.filled - first)
        while lo < rows.shape[0]:
            end = min(self.done + self.shard_videos, self.videos)  # the current shard's last video + 1
            if self.buffer is None:
                self.buffer = torch.empty(end - self.done, self.clips, self.dim, dtype=torch.float32)
            take = min(end - self.filled, rows.shape[0] - lo)
            self.buffer[self.filled - self.done : self.filled - self.done + take] = rows[lo : lo + take]
            self.filled += take
            lo += take
            if self.filled == end:
                self._write_shard()

    def _write_shard(self) -> None:
        name = f"{self.done:09d}.safetensors"
        path = self.folder / name
        partial = self.folder / f".{name}.{os.getpid()}.partial"
        metadata = {key: str(value) for key, value in {**self.about, "feature": self.name}.items()}
        save_file({"features": self.buffer}, str(partial), metadata=metadata)
        _replace_atomically(partial, path)
        self.shards.append({"file": name, "first": self.done, "videos": self.buffer.shape[0],
                            "bytes": path.stat().st_size})
        self.done, self.buffer = self.filled, None
        self._write_manifest()

    def _write_manifest(self) -> None:
        manifest = {"format": FORMAT, "version": VERSION, "feature": self.name, "videos": self.videos,
                    "clips": self.clips, "dim": self.dim, "shard_videos": self.shard_videos,
                    "complete": self.done == self.videos, "shards": self.shards,
                    "about": {key: str(value) for key, value in self.about.items()}}
        partial = self.folder / f".{MANIFEST}.{os.getpid()}.partial"
        partial.write_text(json.dumps(manifest, indent=1))
        _replace_atomically(partial, self.folder / MANIFEST)

    def finish(self) -> ShardedFeature:
        if self.done != self.videos:
            raise RuntimeError(f"{self.folder}: {self.done} of {self.videos} videos extracted")
        listed = {shard["file"] for shard in self.shards}
        for path in self.folder.glob("*.safetensors"):  # shards of another cut, from an earlier interrupted run
            if path.name not in listed:
                path.unlink(missing_ok=True)
        return ShardedFeature(self.folder, {"videos": self.videos, "clips": self.clips, "dim": self.dim,
                                            "shards": self.shards})


class ShardedExtraction:
    """Where one extraction pass writes: a folder per feature name. `begin` says which video to start from (after
    the shards every feature already has), `add(first, {name: rows})` takes each batch in order, `finish` returns
    {name: ShardedFeature}."""

    def __init__(self, folders: dict[str, Path], about: dict):
        self.folders, self.about = {name: Path(folder) for name, folder in folders.items()}, about
        self.writers: dict[str, _ShardWriter] = {}
        self.videos = self.next = 0

    def begin(self, videos: int, clips: int, batch_videos: int) -> int:
        self.writers = {name: _ShardWriter(folder, name, self.about, videos, clips)
                        for name, folder in self.folders.items()}
        self.videos, self.clips, self.batch_videos = videos, clips, max(1, batch_videos)
        self.next = min((writer.done for writer in self.writers.values()), default=videos)
        if 0 < self.next < videos:
            log.info("resuming feature extraction in %s after %d of %d videos", ", ".join(
                str(folder) for folder in self.folders.values()), self.next, videos)
        return self.next

    def add(self, first: int, feats: dict[str, torch.Tensor]) -> None:
        if first != self.next:
            raise RuntimeError(f"feature batches out of order: videos from {first}, expected {self.next}")
        fresh = [writer for writer in self.writers.values() if writer.shard_videos is None]
        if fresh:  # shards of whole batches, SHARD_BYTES at most over this pass's features (one batch at least)
            row_bytes = 4 * self.clips * sum(feats[name].shape[2] for name in self.writers)
            batches = max(1, shard_bytes() // max(1, row_bytes * self.batch_videos))
            for writer in fresh:
                writer.shard_videos = batches * self.batch_videos
        count = next(iter(feats.values())).shape[0]
        for name, writer in self.writers.items():
            writer.add(first, feats[name])
        self.next = first + count

    def finish(self) -> dict[str, ShardedFeature]:
        if self.next != self.videos:
            raise RuntimeError(f"feature extraction stopped at video {self.next} of {self.videos}")
        if not self.videos:  # no rows, no width: nothing, as an extraction in memory returns for no videos
            return {}
        return {name: writer.finish() for name, writer in self.writers.items()}
