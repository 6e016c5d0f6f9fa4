"""The basic linear-probe protocol: frozen features of train/test videos → logistic regression → top-1."""

from __future__ import annotations

import torch

from avcli.evaluate.encoders import EvalEncoders
from avcli.evaluate.features import EvalClips, extract_features
from avcli.evaluate.linear import linear_probe
from avcli.tasks.base import Task


def fit_frontend_on(encoders: EvalEncoders, task: Task, clips: int = 64) -> None:
    """A random-init baseline has no audio statistics yet: fit them on the task's train audio (no labels used)."""
    train = task.split("train")
    dataset = EvalClips(train, encoders.recipe.data.clip, 1)
    picks = torch.linspace(0, len(train) - 1, min(clips, len(train))).round().long().tolist()
    encoders.frontend.fit(torch.stack([dataset[i]["audio"] for i in picks]))


def run_linear_probe(
    encoders: EvalEncoders, task: Task, modalities: tuple[str, ...], clips_per_video: int,
    device: torch.device, workers: int = 0,
) -> list[dict]:
    if not bool(encoders.frontend.fitted):
        fit_frontend_on(encoders, task)
    train, test = task.split("train"), task.split("test")
    if not train or not test:
        raise ValueError(f"task {task.name} needs both train and test videos (got {len(train)} and {len(test)})")
    train_x = extract_features(encoders, train, clips_per_video, device, workers=workers, modalities=modalities)
    test_x = extract_features(encoders, test, clips_per_video, device, workers=workers, modalities=modalities)
    results = []
    for modality in modalities:
        metrics = linear_probe(train_x[modality], [v.label for v in train], test_x[modality], [v.label for v in test])
        results.append(
            {
                "task": task.name,
                "split": "test",
                "protocol": "linear",
                "modality": modality,
                **metrics,
                "chance": round(100 / len(task.classes), 2),
                "clips_per_video": clips_per_video,
                "checkpoint": encoders.checkpoint,
                "recipe_hash": encoders.recipe_hash,
            }
        )
    return results
