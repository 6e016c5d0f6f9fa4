"""`avcli probe --task T --checkpoint CKPT`: evaluate encoders on a labelled task; one JSON line per result.
`avcli probe report RUN_DIR`: the results of a run as a table (and a bar chart with --plot).

`probe` is a command group whose callback runs the probe when no subcommand follows (invoke_without_command),
so `avcli probe --task ...` keeps its form and `avcli probe report ...` is a subcommand beside it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from avcli.commands.output import emit
from avcli.errors import UsageError
from avcli.log import get_logger

log = get_logger("probe")


def default_recipe() -> Path:
    """recipes/quickstart.yaml from the working directory, else from the avcli source tree."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = root / "recipes" / "quickstart.yaml"
        if candidate.is_file():
            return candidate
    raise UsageError("no recipes/quickstart.yaml here; pass --recipe for --checkpoint random")


def random_baseline_recipe(recipe: Path | None, task: str, results_dir: Path | None) -> Path:
    """The architecture a `--checkpoint random` baseline initialises: `--recipe`; else the recipe of the run it is
    compared with (`--results-dir RUN`, a run directory with its recipe.yaml); else, for the synthetic task, the
    quickstart recipe that defines the world. Anything else is ambiguous (a tiny CPU encoder and AVID's Conv2D-10
    give very different baselines), so it is a usage error."""
    if recipe is not None:
        return recipe
    if results_dir is not None and (Path(results_dir) / "recipe.yaml").is_file():
        return Path(results_dir) / "recipe.yaml"
    if task == "synthetic":
        return default_recipe()
    raise UsageError("--checkpoint random needs the architecture to initialise: pass --recipe, the recipe of the "
                     "checkpoint it is compared with (recipes/xid.yaml: AVID's Conv2D-10 and R(2+1)D-18; "
                     "recipes/quickstart.yaml: the tiny CPU encoders), or --results-dir RUN of that checkpoint")


def parse_splits(text: str | None, split_ids: tuple[str, ...]) -> list[str]:
    """`--splits`: none → the task's first split; `all`; or a comma-separated list such as `1,3`."""
    if text is None:
        return [split_ids[0]]
    if text == "all":
        return list(split_ids)
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [s for s in wanted if s not in split_ids]
    if unknown or not wanted:
        raise UsageError(f"--splits {text}: this task has the splits {', '.join(split_ids)} (or use all)")
    return wanted


def parse_milestones(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--milestones {text}: expected epochs separated by commas, e.g. 6,10,14") from None


def register(app: typer.Typer) -> None:
    probe_app = typer.Typer(help="Evaluate encoders on a labelled task (linear, SVM, kNN or fine-tuning).",
                            add_completion=False, rich_markup_mode=None)
    app.add_typer(probe_app, name="probe")

    @probe_app.callback(invoke_without_command=True)
    def probe(
        ctx: typer.Context,
        task: Optional[str] = typer.Option(None, "--task", help="Task name (see --list-tasks)."),
        checkpoint: Optional[str] = typer.Option(
            None, "--checkpoint", help="Run dir, checkpoints/latest, a step dir, or 'random' for the baseline."
        ),
        data_root: Optional[Path] = typer.Option(
            None, "--data-root", help="Dataset root (for csv: the CSV file); for synthetic, the recipe's catalog."
        ),
        recipe: Optional[Path] = typer.Option(
            None, "--recipe", help="Recipe for the architecture (default: the checkpoint's; for random: the run in "
                                   "--results-dir, the quickstart for the synthetic task, else required)."
        ),
        protocol: str = typer.Option(
            "linear", "--protocol", help="linear, svm (audio), knn, finetune, or linear-multilayer (AVID-CMA's "
            "BatchNorm + linear classifier on each of conv2x–conv5x of the frozen encoder, max-pooled)."),
        modality: Optional[str] = typer.Option(
            None, "--modality", help="video, audio or both (default: audio for audio tasks and svm, else both)."
        ),
        splits: Optional[str] = typer.Option(
            None, "--splits", help="Split or fold ids (1,2), or 'all' for each and their mean ± std; default: the first."
        ),
        sampling: Optional[str] = typer.Option(
            None, "--sampling",
            help="standard (the protocol's clips: Clip@1/Video@1, or 10 windows per recording) or mean (average "
                 "--clips clips per video); default: mean for synthetic, else standard.",
        ),
        clips: int = typer.Option(4, "--clips", min=1, help="mean sampling: evenly spaced clips averaged per video."),
        train_clips: int = typer.Option(10, "--train-clips", min=1, help="standard: random clips per train video."),
        test_clips: int = typer.Option(10, "--test-clips", min=1,
                                       help="standard: evenly spaced test clips (Video@1; per recording for audio)."),
        random_test_clips: int = typer.Option(25, "--random-test-clips", min=0,
                                              help="standard, video tasks: random test clips for Clip@1 (0: skip)."),
        audio_seconds: float = typer.Option(2.0, "--audio-seconds", min=0.1, help="Window of audio tasks, seconds."),
        audio_padding: str = typer.Option(
            "start", "--audio-padding",
            help="Audio tasks, a recording shorter than the window: start (at the window's start, zeros after it), "
                 "centre (zeros either side), end (zeros before it), tile (repeated), none (a window of its length).",
        ),
        c: Optional[float] = typer.Option(None, "--c", min=1e-6, help="C of linear/svm (default 1; svm: the task's)."),
        svm_max_iter: int = typer.Option(1000, "--svm-max-iter", min=1,
                                         help="svm: solver iterations (sklearn: per class; torch: L-BFGS, all classes)."),
        classifier: str = typer.Option(
            "torch", "--classifier", help="linear and svm: torch (the same objectives by L-BFGS on --device, the "
            "default) or sklearn (scikit-learn's LogisticRegression / LinearSVC, the reference)."),
        k: int = typer.Option(20, "--k", min=1, help="knn: neighbours that vote."),
        temperature: float = typer.Option(0.07, "--temperature", min=1e-4, help="knn: vote weight exp(cos/T)."),
        epochs: Optional[int] = typer.Option(None, "--epochs", min=1,
                                             help="finetune: epochs of the whole network (default: the task's); "
                                                  "linear-multilayer: epochs (default 12)."),
        warmup_epochs: Optional[int] = typer.Option(None, "--warmup-epochs", min=0,
                                                    help="finetune: classifier-only epochs first (default 5)."),
        milestones: Optional[str] = typer.Option(None, "--milestones", help="finetune: lr ×0.3 at these epochs; "
                                                 "linear-multilayer: lr ×0.1 (default 6,9)."),
        lr: float = typer.Option(1e-4, "--lr", min=0.0, help="finetune and linear-multilayer: Adam learning rate."),
        batch_size: Optional[int] = typer.Option(
            None, "--batch-size", min=1, help="Clips per batch (extraction: 32; finetune: the task's, 64 for "
            "UCF101/HMDB51 as AVID-CMA)."),
        finetune_clips: Optional[int] = typer.Option(
            None, "--finetune-clips", min=1, help="finetune: random clips of every training video per epoch "
            "(default the task's: UCF101 10, HMDB51 25, as AVID-CMA; others 1)."),
        warmup_bn: str = typer.Option(
            "update", "--warmup-bn", help="finetune: batch-norm statistics during the classifier warm-up: update "
            "(AVID-CMA) or freeze."),
        task_meta: Optional[Path] = typer.Option(None, "--task-meta",
                                                 help="The official split/label files, if not in or beside the root."),
        allow_missing: bool = typer.Option(False, "--allow-missing",
                                           help="Evaluate on the listed files present when some are missing."),
        catalog: Optional[Path] = typer.Option(None, "--catalog",
                                               help="Read videos an ingest cataloged from its training copies."),
        results_dir: Optional[Path] = typer.Option(
            None, "--results-dir", help="Where results.jsonl (and the feature cache) go; default: the checkpoint's run."
        ),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Feature cache folder."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the features (and cache nothing)."),
        workers: int = typer.Option(0, "--workers", min=0, help="Data-loader workers for feature extraction."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
        list_tasks: bool = typer.Option(False, "--list-tasks", help="List the tasks and the data each expects."),
    ) -> int:
        if ctx.invoked_subcommand is not None:
            return 0
        from avcli.tasks.registry import TASK_INFO

        if list_tasks:
            for info in TASK_INFO.values():
                emit({"task": info.name, "description": info.description, "data_root": info.layout})
            return 0
        if task is None or checkpoint is None:
            raise UsageError("avcli probe needs --task and --checkpoint (see --list-tasks, or `avcli probe report`)")
        if task not in TASK_INFO:
            raise UsageError(f"--task {task}: unknown task; available: {', '.join(sorted(TASK_INFO))}")
        if protocol not in ("linear", "svm", "knn", "finetune", "linear-multilayer"):
            raise UsageError(f"--protocol {protocol}: choose linear, svm, knn, finetune or linear-multilayer")
        if classifier not in ("torch", "sklearn"):
            raise UsageError(f"--classifier {classifier}: choose torch or sklearn")
        if modality not in (None, "video", "audio", "both"):
            raise UsageError(f"--modality {modality}: choose video, audio or both")
        if sampling not in (None, "standard", "mean"):
            raise UsageError(f"--sampling {sampling}: choose standard or mean")
        from avcli.evaluate.clip_sampling import check_padding

        audio_padding = check_padding(audio_padding)
        run_probe(locals())
        return 0

    @probe_app.command("report", help="Print the probe results of a run as a table; --plot writes a bar chart.")
    def report(
        run_dir: Path = typer.Argument(..., help="Run directory (or its results.jsonl)."),
        fmt: str = typer.Option("json", "--format",
                                help="json: the results as JSON lines (numbers) on stdout and the table on stderr; "
                                     "markdown: the table on stdout."),
        plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG bar chart of top-1 here."),
    ) -> int:
        from avcli.evaluate.report import markdown_table, plot_results, read_results, table_rows

        if fmt not in ("json", "markdown"):
            raise UsageError(f"--format {fmt}: choose json or markdown")
        records = read_results(run_dir)
        rows = table_rows(records)
        if plot is not None:
            plot_results(records, plot)
            log.info("wrote %s", plot)
        if fmt == "markdown":
            sys.stdout.write(markdown_table(rows) + "\n")
        else:
            sys.stderr.write(markdown_table(rows) + "\n")
            for record in records:  # the records themselves: numbers stay numbers for the next tool in a pipe
                emit(record)
        return 0


def run_probe(options: dict) -> None:
    """The probe itself, from the command's options (imports here keep `avcli --help` fast)."""
    from avcli.tasks import load_task

    o = options
    if o["data_root"] is None and o["task"] != "synthetic":
        raise UsageError(f"--task {o['task']} needs --data-root (see avcli probe --list-tasks for the layout)")

    def task_at(root):
        return load_task(o["task"], Path(root), meta=o["task_meta"], allow_missing=o["allow_missing"])

    task = task_at(o["data_root"]) if o["data_root"] is not None else None  # a bad data root fails first, fast

    from avcli.evaluate.clip_sampling import mean_sampling, standard_sampling
    from avcli.evaluate.encoders import load_eval_encoders
    from avcli.evaluate.feature_cache import FeatureCache, checkpoint_identity, default_cache_dir
    from avcli.evaluate.finetune import DEFAULT_SCHEDULE, FinetuneOptions
    from avcli.evaluate.probe import ProbeSettings, probe_split
    from avcli.evaluate.report import RESULTS, summarise_splits
    from avcli.tasks.catalog_sources import read_from_catalog
    from avcli.train.runtime import resolve_device

    recipe = o["recipe"]
    if o["checkpoint"] == "random":
        recipe = random_baseline_recipe(recipe, o["task"], o["results_dir"])
    encoders = load_eval_encoders(o["checkpoint"], recipe)
    task = task or task_at(encoders.recipe.data.catalog)  # synthetic: the world the recipe trains on
    if o["catalog"] is not None:
        task = read_from_catalog(task, o["catalog"])
    modalities = _modalities(o["modality"], o["protocol"], task.audio_only)
    sampling_name = o["sampling"] or ("mean" if task.name == "synthetic" else "standard")
    if sampling_name == "mean":
        sampling = mean_sampling(o["clips"], o["audio_seconds"] if task.audio_only else None, o["audio_padding"])
    else:
        sampling = standard_sampling(task.audio_only, o["train_clips"], o["test_clips"], o["random_test_clips"],
                                     audio_seconds=o["audio_seconds"], padding=o["audio_padding"])
    for modality in modalities:
        log.info("%s %s: %s%s", "random-init" if o["checkpoint"] == "random" else "checkpoint", modality,
                 encoders.architecture(modality), f" (from {recipe})" if o["checkpoint"] == "random" else "")
    settings = ProbeSettings(o["protocol"], sampling, c=o["c"], knn_k=o["k"], knn_temperature=o["temperature"],
                             svm_max_iter=o["svm_max_iter"], classifier=o["classifier"],
                             batch_clips=o["batch_size"] or 32, workers=o["workers"],
                             extra={"catalog": str(o["catalog"]) if o["catalog"] else None})
    if o["protocol"] == "linear-multilayer":  # AVID-CMA configs/benchmark/kinetics/8x224x224-linear.yaml defaults
        from avcli.evaluate.linear_multilayer import MultilayerOptions

        defaults = MultilayerOptions()
        epochs = o["epochs"] or defaults.epochs
        milestones = parse_milestones(o["milestones"])
        settings.multilayer = MultilayerOptions(
            epochs=epochs, milestones=milestones if milestones is not None else
            tuple(m for m in defaults.milestones if m < epochs), lr=o["lr"],
            batch_size=o["batch_size"] or defaults.batch_size, workers=o["workers"],
            seed=encoders.recipe.training.seed)
    if o["protocol"] == "finetune":
        base = task.schedule or DEFAULT_SCHEDULE
        epochs = o["epochs"] if o["epochs"] is not None else base.epochs
        milestones = parse_milestones(o["milestones"])
        if o["warmup_bn"] not in ("update", "freeze"):
            raise UsageError(f"--warmup-bn {o['warmup_bn']}: choose update or freeze")
        schedule = replace(
            base, epochs=epochs,
            milestones=milestones if milestones is not None else tuple(m for m in base.milestones if m < epochs),
            warmup_epochs=o["warmup_epochs"] if o["warmup_epochs"] is not None else base.warmup_epochs,
            clips_per_video=o["finetune_clips"] or base.clips_per_video,
        )
        settings.finetune = FinetuneOptions(schedule, lr=o["lr"], batch_size=o["batch_size"], workers=o["workers"],
                                            warmup_bn=o["warmup_bn"],
                                            seed=encoders.recipe.training.seed)
    results_dir = o["results_dir"] or encoders.run_dir
    cache_folder = None if o["no_cache"] else (
        o["cache_dir"] or (Path(results_dir) / "feature_cache" if results_dir is not None else default_cache_dir()))
    cache = FeatureCache(cache_folder, checkpoint_identity(encoders))
    device = resolve_device(o["device"])
    split_ids = parse_splits(o["splits"], task.split_ids)
    records: list[dict] = []
    for split_id in split_ids:
        for record in probe_split(encoders, task.select(split_id), modalities, settings, device, cache):
            _report(record)
            records.append(record)
    if len(split_ids) > 1:
        for modality in modalities:
            summary = summarise_splits([r for r in records if r["modality"] == modality])
            _report(summary)
            records.append(summary)
    if cache.hits:
        log.info("%d feature sets read from the cache %s (--no-cache recomputes them)", cache.hits, cache_folder)
    if results_dir is not None:
        Path(results_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(results_dir) / RESULTS, "a") as fh:
            fh.writelines(json.dumps(r, default=str) + "\n" for r in records)


def _modalities(modality: str | None, protocol: str, audio_task: bool) -> tuple[str, ...]:
    if protocol == "svm":
        if modality not in (None, "audio"):
            raise UsageError(f"--protocol svm is the audio protocol; use --modality audio, not {modality}")
        return ("audio",)
    if audio_task:
        if modality not in (None, "audio"):
            raise UsageError(f"--modality {modality}: this task is sound recordings only; use --modality audio")
        return ("audio",)
    if modality in (None, "both"):
        return ("video", "audio")
    return (modality,)


def _report(record: dict) -> None:
    emit(record)
    std = f" ± {record['top1_std']:.2f}" if "top1_std" in record else ""
    extra = f", best layer {record['best_layer']}" if "best_layer" in record else ""
    log.info("%s split %s %s %s top-1 %.2f%%%s%s", record["task"], record["split"], record["protocol"],
             record["modality"], record["top1"], std, extra)
