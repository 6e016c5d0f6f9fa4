"""Training-time health measurements on fixed, pre-decoded samples (no augmentation):

- the objective's own held-out figures (AVTS: sync accuracy on fixed positive / easy / hard pairs);
- an online kNN accuracy of the encoders' features on a small labelled slice of the catalog
  (`training.knn`): leave-one-out, cosine similarity, the k nearest vote with weight exp(s/0.07).

Both decode their samples once, before the data-loader workers start, and only run forward passes afterwards.
The decoded samples stay in host memory as the collate made them (uint8 frames, waveforms) and go to the
device a chunk at a time: on a GPU the held-out pairs of a full-size AVTS recipe would otherwise hold gigabytes
of float32 clips on rank 0's device for the whole run. Every measurement runs with the model and the objective
in eval mode: running statistics are used, none is updated, and no batch-norm collective runs (rank 0 measures
alone, the other ranks must not be waited for).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from avcli.data.clip_dataset import ClipDataset, DataError, centred_spec, collate_samples
from avcli.errors import UsageError
from avcli.train.objectives import TrainBatch

KNN_TEMPERATURE = 0.07
CHUNK = 64  # samples per forward pass of a measurement


def collated_rows(collated, rows: slice):
    """The samples `rows` of a collated batch (tensors and lists sliced along the batch, dicts recursively)."""
    if isinstance(collated, dict):
        return {k: v if k == "video_windows" else collated_rows(v, rows) for k, v in collated.items()}
    return collated[rows]


class FixedSamples:
    """Decoded samples held on the CPU as collated; `chunks()` hands them to the device `CHUNK` at a time."""

    def __init__(self, samples: list[dict], make_batch):
        self.collated = collate_samples(samples)
        self.size = len(samples)
        self.make_batch = make_batch

    def chunks(self, size: int = CHUNK):
        for start in range(0, self.size, size):
            with torch.no_grad():
                yield self.make_batch(collated_rows(self.collated, slice(start, start + size)))


@contextmanager
def evaluation_mode(*modules):
    """Eval mode for every module given, restored on exit."""
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, was):
            m.train(mode)


def decode_fixed(dataset: ClipDataset, specs) -> list[dict]:
    """Decode `specs` without augmentation; a sample that does not decode is left out."""
    evaluation = ClipDataset(dataset.items, dataset.clip, dataset.augment, train=False, max_consecutive_failures=1)
    samples = []
    for spec in specs:
        try:
            samples.append(evaluation[spec])
        except DataError:
            continue
    evaluation.readers.close()  # workers fork after this: they must not inherit open decoders
    return samples


def held_out_batch(objective, sampler, dataset: ClipDataset, make_batch, method_cfg) -> FixedSamples | None:
    """The fixed held-out pairs an objective measures itself on; None when the method has none."""
    count = getattr(method_cfg, "held_out_pairs", 0)
    if not count or not hasattr(objective, "held_out_stats"):
        return None
    samples = decode_fixed(dataset, sampler.held_out_specs(count))
    if not samples:
        return None
    return FixedSamples(samples, make_batch)


@torch.no_grad()
def evaluate_held_out(objective, model, held_out: FixedSamples) -> dict:
    with evaluation_mode(model, objective):
        return objective.held_out_stats(model, held_out.chunks())


def knn_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Leave-one-out weighted kNN top-1 over L2-normalised rows (the sample itself never votes)."""
    features = torch.nn.functional.normalize(features.float(), dim=1)
    similarity = features @ features.t()
    similarity.fill_diagonal_(float("-inf"))
    k = min(k, len(labels) - 1)
    top, index = similarity.topk(k, dim=1)
    votes = torch.zeros(len(labels), int(labels.max()) + 1, device=features.device)
    votes.scatter_add_(1, labels[index], (top / KNN_TEMPERATURE).exp())
    return float((votes.argmax(1) == labels).float().mean())


class KNNMonitor:
    """`training.knn`: up to `items` labelled catalog items, spread evenly, one centred clip each."""

    def __init__(self, cfg, dataset: ClipDataset, make_batch):
        labelled = [i for i, item in enumerate(dataset.items) if item.label is not None]
        if len(labelled) < 2:
            raise UsageError("training.knn: the catalog has fewer than 2 labelled items; ingest with --layout or "
                             "remove training.knn")
        spread = torch.linspace(0, len(labelled) - 1, min(cfg.items, len(labelled))).round().long().tolist()
        picks = [labelled[j] for j in spread]
        samples = decode_fixed(dataset, [centred_spec(dataset.items, i, dataset.clip) for i in picks])
        names = sorted({dataset.items[i].label for i in picks})
        self.labels = torch.tensor([names.index(dataset.items[int(s["items"][0])].label) for s in samples])
        self.cfg = cfg
        self.samples = FixedSamples(samples, make_batch)

    @torch.no_grad()
    def __call__(self, model) -> dict:
        video, audio = [], []
        with evaluation_mode(model):
            for part in self.samples.chunks():
                video.append(model.video(part.video[:, 0]).float())
                audio.append(model.audio(part.audio[:, 0]).float())
        k, labels = self.cfg.k, self.labels.to(video[0].device)
        return {"knn_video": knn_accuracy(torch.cat(video), labels, k),
                "knn_audio": knn_accuracy(torch.cat(audio), labels, k)}
