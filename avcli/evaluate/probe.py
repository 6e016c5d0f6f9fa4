"""The probe protocols on one split of a task (METHODS.md §6): `linear`, `svm` and `knn` on cached frozen
features, `finetune` on the whole encoder. One result record per modality.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import torch

from avcli.errors import UsageError
from avcli.evaluate.classifiers import KNNProbe, averaged_top1, clip_top1, logistic_probe, svm_probe
from avcli.evaluate.clip_features import AUDIO_LAYERS, extract_clip_features, sample_audio
from avcli.evaluate.clip_sampling import DEFAULT_PADDING, WINDOW_PLANNING, ClipPlan, Sampling, mean_sampling
from avcli.evaluate.encoders import EvalEncoders
from avcli.evaluate.feature_cache import FeatureCache
from avcli.evaluate.feature_shards import as_tensor, feature_chunks
from avcli.evaluate.finetune import FinetuneOptions, finetune
from avcli.evaluate.linear_multilayer import MultilayerOptions, linear_multilayer
from avcli.log import get_logger
from avcli.tasks.base import Task, TaskVideo

log = get_logger("probe")
PROTOCOLS = ("linear", "svm", "knn", "finetune", "linear-multilayer")
AUDIO_WINDOW_FIELDS = ("window_s", "padding", "windows")


@dataclass
class ProbeSettings:
    protocol: str
    sampling: Sampling
    c: float | None = None  # linear: 1.0; svm: the task's C
    knn_k: int = 20
    knn_temperature: float = 0.07
    svm_max_iter: int = 1000  # scikit-learn's default; the solver's own criterion is strict (README: SVM cost)
    classifier: str = "torch"  # linear and svm: torch (L-BFGS on the probe's device) or sklearn (the reference)
    finetune: FinetuneOptions | None = None
    multilayer: MultilayerOptions | None = None
    batch_clips: int = 32
    workers: int = 0
    extra: dict = field(default_factory=dict)  # recorded in every result (e.g. the catalog)


STATS_RECORDINGS = 512  # recordings the audio statistics of a random-init frontend are fitted on (at most)


def fit_frontend_on(encoders: EvalEncoders, task: Task, clips: int | None = None,
                    audio_seconds: float | None = None, padding: str = DEFAULT_PADDING) -> None:
    """A random-init baseline has no audio statistics yet: fit them, once, on one window (padded as the probe
    pads it) of up to `clips` train recordings of the task's first split, whichever splits are probed, so a split
    gets the same statistics alone as in `--splits all` (no labels are used)."""
    clips = clips or STATS_RECORDINGS
    first = task.select(task.split_ids[0])
    train = first.split("train")
    encoders.frontend.fit(sample_audio(encoders, train, task.audio_only, audio_seconds, clips, padding))
    where = f" of split {first.split_id}" if len(task.split_ids) > 1 else ""
    encoders.stats = {"audio_stats": f"fitted on {min(clips, len(train))} train recordings{where}"}


def probe_split(encoders: EvalEncoders, task: Task, modalities: tuple[str, ...], settings: ProbeSettings,
                device: torch.device, cache: FeatureCache | None = None) -> list[dict]:
    train, test = task.split("train"), task.split("test")
    if not train or not test:
        raise UsageError(f"task {task.name} split {task.split_id} needs train and test files (got {len(train)} and "
                         f"{len(test)}); check the data root and the split files")
    if settings.protocol == "svm" and tuple(modalities) != ("audio",):
        raise UsageError("--protocol svm is the audio protocol; use --modality audio")
    sampling = settings.sampling
    if not bool(encoders.frontend.fitted):  # a random-init frontend: fitted once, at the first split probed
        fit_frontend_on(encoders, task, audio_seconds=sampling.audio_seconds, padding=sampling.padding)
    if settings.protocol == "finetune":
        results = []
        for modality in modalities:
            metrics = finetune(encoders, task, modality, sampling, settings.finetune, device)
            schedule = settings.finetune.schedule
            details = {"epochs": schedule.epochs, "warmup_epochs": schedule.warmup_epochs, "lr": settings.finetune.lr,
                       "clips_per_video": schedule.clips_per_video,
                       "batch_size": settings.finetune.batch_size or schedule.batch_size,
                       "warmup_bn": settings.finetune.warmup_bn}
            results.append(_record(encoders, task, settings, modality, metrics, details))
        return results
    if settings.protocol == "linear-multilayer":
        options = settings.multilayer or MultilayerOptions()
        details = {"epochs": options.epochs, "milestones": list(options.milestones), "lr": options.lr,
                   "batch_size": options.batch_size}
        return [_record(encoders, task, settings, modality,
                        linear_multilayer(encoders, task, modality, sampling, options, device), details)
                for modality in modalities]
    by_modality = _frozen(encoders, task, modalities, settings, device, cache or FeatureCache(None, {}))
    return [_record(encoders, task, settings, modality, *by_modality[modality]) for modality in modalities]


def _frozen(encoders, task: Task, modalities: tuple[str, ...], settings: ProbeSettings, device,
            cache: FeatureCache) -> dict[str, tuple[dict, dict]]:
    """{modality: (metrics, details)}; the features of all modalities are extracted in one pass over the data."""
    sampling = settings.sampling
    train, test = task.split("train"), task.split("test")
    train_y, test_y = [v.label for v in train], [v.label for v in test]
    names = set(AUDIO_LAYERS) if settings.protocol == "svm" else set(modalities)

    def features(part: str, videos: list[TaskVideo], plan: ClipPlan, streamed: bool = False) -> dict:
        # the scikit-learn probes, kNN and scoring take whole arrays: materialised here (mean sampling: averaged
        # shard by shard); the torch classifiers read the training features shard by shard from the cache instead
        found = _features(encoders, task, part, videos, plan, names, sampling, settings, device, cache)
        if sampling.averages_features:
            return {name: _averaged(f) for name, f in found.items()}
        return found if streamed else {name: as_tensor(f) for name, f in found.items()}

    train_x = features("train", train, sampling.train,
                       streamed=settings.classifier == "torch" and settings.protocol in ("linear", "svm"))
    tests = [(metric, features("test", test, plan)) for metric, plan in sampling.tests]
    if settings.protocol == "svm":  # the audio protocol: every layer of the audio encoder
        c = settings.c if settings.c is not None else task.svm_c
        layers = {}
        for name in AUDIO_LAYERS:
            started = time.perf_counter()
            probe = _fit(svm_probe(settings.classifier, c, settings.svm_max_iter, device), train_x[name], train_y)
            layers[name.split(".")[1]] = averaged_top1(probe, tests[0][1][name], test_y)
            log.info("svm %s: top-1 %.2f%% (%d features, %s, fitted in %.1f s)", name, layers[name.split(".")[1]],
                     train_x[name].shape[-1], settings.classifier, time.perf_counter() - started)
        best = max(layers, key=layers.get)
        details = {"c": c, "max_iter": settings.svm_max_iter, "classifier": settings.classifier}
        return {"audio": ({"top1": layers[best], "best_layer": best, "layers": layers}, details)}
    out = {}
    for modality in modalities:
        if settings.protocol == "knn":
            probe = KNNProbe(settings.knn_k, settings.knn_temperature).fit(train_x[modality], train_y)
            details = {"k": settings.knn_k, "temperature": settings.knn_temperature}
        else:
            c = settings.c if settings.c is not None else 1.0
            probe = _fit(logistic_probe(settings.classifier, c, device), train_x[modality], train_y)
            details = {"c": c, "classifier": settings.classifier}
        metrics = {}
        for metric, found in tests:
            score = clip_top1 if metric == "clip_top1" else averaged_top1
            metrics[metric] = score(probe, found[modality], test_y)
        out[modality] = (metrics, details)
    return out


def _fit(probe, train: torch.Tensor, labels: list[int]):
    probe.fit(train, labels)
    if not getattr(probe, "converged_", True):  # the torch classifiers say; scikit-learn's runs stay silent (above)
        log.warning("%s stopped after %d L-BFGS iterations with gradient %.2g above its tolerance %.2g; its "
                    "accuracy may still change (raise --svm-max-iter for svm)", type(probe).__name__, probe.n_iter_,
                    probe.grad_max_, probe.tol_)
    return probe


def _features(encoders, task: Task, part: str, videos: list[TaskVideo], plan: ClipPlan, names: set[str],
              sampling: Sampling, settings: ProbeSettings, device, cache: FeatureCache) -> dict:
    """The features `names` of the plan's clips of `videos`, from the cache where they are there: each a V×K×D
    tensor (no cache) or a feature on disk with `.shape` and `.chunks()` (feature_shards), which the torch
    classifiers stream and `as_tensor` materialises."""
    clip = encoders.recipe.data.clip
    files = hashlib.sha1(json.dumps([(v.path, v.label, v.media) for v in videos]).encode()).hexdigest()
    audio_windows = {"padding": sampling.padding, "windows": WINDOW_PLANNING} if task.audio_only else {}
    key = cache.key(task=task.name, split=task.split_id, part=part, plan=plan.name, audio_task=task.audio_only,
                    window=sampling.audio_seconds or clip.audio_seconds, clip=clip.model_dump(), files=files,
                    catalog=settings.extra.get("catalog"), frontend=encoders.frontend_digest, **audio_windows)
    found = {name: cache.get(key, name) for name in names}
    missing = {name for name, tensor in found.items() if tensor is None}
    if missing:  # to the cache's shards as they are made (resuming an interrupted entry), or in memory (no cache)
        about = {"task": task.name, "split": task.split_id, "part": part, "plan": plan.name}
        found.update(extract_clip_features(encoders, videos, plan, missing, device, task.audio_only,
                                           sampling.audio_seconds, settings.batch_clips, settings.workers,
                                           description=f"{task.name} {part} {plan.name}", padding=sampling.padding,
                                           into=cache.writer(key, missing, about)))
    return found


def _averaged(feature) -> torch.Tensor:
    """V×1×D clip means of a V×K×D feature, one chunk in memory at a time (each video's mean is its own)."""
    return torch.cat([_average_clips(chunk) for chunk in feature_chunks(feature)])


def _average_clips(features: torch.Tensor) -> torch.Tensor:
    """V×K×D → V×1×D, summed clip by clip in order (the same float result as the first probe's running sum)."""
    total = features[:, 0].clone()
    for k in range(1, features.shape[1]):
        total += features[:, k]
    return (total / features.shape[1]).unsqueeze(1)


def _record(encoders, task: Task, settings: ProbeSettings, modality: str, metrics: dict, details: dict) -> dict:
    train_labels = {v.label for v in task.split("train")}
    if "top1" not in metrics and "video_top1" in metrics:
        metrics = {"top1": metrics["video_top1"], **metrics}
    record = {"task": task.name, "split": task.split_id, "protocol": settings.protocol, "modality": modality,
              **metrics, "n_train": len(task.split("train")), "n_test": len(task.split("test")),
              "chance": round(100 / max(len(train_labels), 1), 2)}
    sampling = settings.sampling
    if sampling.averages_features:
        record["clips_per_video"] = sampling.train.count
        if task.audio_only:
            record.update({k: v for k, v in sampling.describe(True).items() if k in AUDIO_WINDOW_FIELDS})
    else:
        record.update(sampling.describe(task.audio_only))
    if task.n_missing:
        record["n_missing"] = task.n_missing
    record.update(details)
    record.update({k: v for k, v in settings.extra.items() if v is not None})
    record.update({"checkpoint": encoders.checkpoint, "recipe_hash": encoders.recipe_hash,
                   "architecture": encoders.architecture(modality)})
    if modality == "audio":
        record.update(encoders.stats)
    return record


def run_linear_probe(
    encoders: EvalEncoders, task: Task, modalities: tuple[str, ...], clips_per_video: int,
    device: torch.device, workers: int = 0,
) -> list[dict]:
    """The first probe's form: the linear protocol on the mean feature of `clips_per_video` evenly spaced clips."""
    settings = ProbeSettings("linear", mean_sampling(clips_per_video), workers=workers)
    return probe_split(encoders, task, modalities, settings, device)
