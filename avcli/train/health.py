"""Training-time health measurements on fixed, pre-decoded samples (no augmentation):

- the objective's own held-out figures (AVTS: sync accuracy on fixed positive / easy / hard pairs);
- an online kNN accuracy of the encoders' features on a small labelled slice of the catalog
  (`training.knn`): leave-one-out, cosine similarity, the k nearest vote with weight exp(s/0.07).

Both decode their samples once, before the data-loader workers start, and only run forward passes afterwards.
"""

from __future__ import annotations

import torch

from avcli.data.clip_dataset import ClipDataset, DataError, centred_spec, collate_samples
from avcli.errors import UsageError
from avcli.train.objectives import TrainBatch

KNN_TEMPERATURE = 0.07


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


def held_out_batch(objective, sampler, dataset: ClipDataset, make_batch, method_cfg) -> TrainBatch | None:
    """The fixed held-out pairs an objective measures itself on; None when the method has none."""
    count = getattr(method_cfg, "held_out_pairs", 0)
    if not count or not hasattr(objective, "held_out_stats"):
        return None
    samples = decode_fixed(dataset, sampler.held_out_specs(count))
    if not samples:
        return None
    with torch.no_grad():
        return make_batch(collate_samples(samples))


@torch.no_grad()
def evaluate_held_out(objective, model, held_out: TrainBatch) -> dict:
    model.eval()
    try:
        return objective.held_out_stats(model, held_out)
    finally:
        model.train()


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
        with torch.no_grad():
            self.batch = make_batch(collate_samples(samples))
        self.labels = self.labels.to(self.batch.video.device)

    @torch.no_grad()
    def __call__(self, model) -> dict:
        model.eval()
        try:
            video, audio = [], []
            for start in range(0, self.batch.size, 64):
                part = self.batch.rows(slice(start, start + 64))
                video.append(model.video(part.video[:, 0]))
                audio.append(model.audio(part.audio[:, 0]))
        finally:
            model.train()
        k = self.cfg.k
        return {"knn_video": knn_accuracy(torch.cat(video), self.labels, k),
                "knn_audio": knn_accuracy(torch.cat(audio), self.labels, k)}
