"""Probe results: the summary over splits (`--splits all`), and `avcli probe report`'s table and bar chart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from avcli.errors import UsageError

RESULTS = "results.jsonl"
METRICS = ("top1", "video_top1", "clip_top1")
COLUMNS = ("task", "split", "protocol", "modality", "top1", "clip@1", "video@1", "best layer", "n_test", "checkpoint")


def summarise_splits(records: list[dict]) -> dict:
    """One record for the results of the same probe on several splits: each metric's mean and (sample) std."""
    first = records[0]
    summary = {key: first[key] for key in ("task", "protocol", "modality")}
    summary["split"] = "mean"
    summary["splits"] = [r["split"] for r in records]
    for metric in METRICS:
        values = [r[metric] for r in records if metric in r]
        if len(values) == len(records):
            summary[metric] = round(statistics.fmean(values), 2)
            summary[f"{metric}_std"] = round(statistics.stdev(values), 2) if len(values) > 1 else 0.0
    if "layers" in first:
        layers = {name: round(statistics.fmean(r["layers"][name] for r in records), 2) for name in first["layers"]}
        summary["layers"] = layers
        summary["best_layer"] = max(layers, key=layers.get)
    for key in ("checkpoint", "recipe_hash"):
        summary[key] = first[key]
    for key in ("architecture", "window_s", "padding", "windows"):  # what was probed, where the records say
        if key in first:
            summary[key] = first[key]
    return summary


def read_results(run_dir: Path) -> list[dict]:
    path = Path(run_dir)
    path = path / RESULTS if path.is_dir() else path
    if not path.is_file():
        raise UsageError(f"{path}: no probe results; run `avcli probe ... --results-dir {run_dir}` first")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise UsageError(f"{path}:{number}: not a JSON line; remove or repair that line") from None
    if not records:
        raise UsageError(f"{path}: empty; run `avcli probe` first")
    return records


def table_rows(records: list[dict]) -> list[dict]:
    """One row per result: the columns of the table (metrics as text, a mean with its ± std)."""
    rows = []
    for r in records:
        def metric(name):
            if name not in r:
                return ""
            return f"{r[name]:.2f} ± {r[f'{name}_std']:.2f}" if f"{name}_std" in r else f"{r[name]:.2f}"

        checkpoint = str(r.get("checkpoint", ""))
        rows.append({
            "task": r.get("task", ""), "split": str(r.get("split", "")), "protocol": r.get("protocol", ""),
            "modality": r.get("modality", ""), "top1": metric("top1"), "clip@1": metric("clip_top1"),
            "video@1": metric("video_top1"), "best layer": r.get("best_layer", ""), "n_test": str(r.get("n_test", "")),
            "checkpoint": checkpoint if checkpoint == "random" else Path(checkpoint).name,
        })
    return rows


def markdown_table(rows: list[dict]) -> str:
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in COLUMNS}
    lines = ["| " + " | ".join(c.ljust(widths[c]) for c in COLUMNS) + " |",
             "|" + "|".join("-" * (widths[c] + 2) for c in COLUMNS) + "|"]
    lines += ["| " + " | ".join(str(row[c]).ljust(widths[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def plot_results(records: list[dict], path: Path) -> None:
    """A horizontal bar chart of top-1 per result (error bars for means over splits) as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(f"--plot {path}: matplotlib is not installed; `pip install matplotlib` (or avcli[plot]), or drop --plot") from None
    shown = [r for r in records if "top1" in r]
    labels = [f"{r['task']} {r['split']} {r['protocol']} {r['modality']} "
              f"{'random' if r.get('checkpoint') == 'random' else Path(str(r.get('checkpoint'))).name}" for r in shown]
    figure, axes = plt.subplots(figsize=(8, 0.35 * len(shown) + 1.2))
    axes.barh(range(len(shown)), [r["top1"] for r in shown], xerr=[r.get("top1_std", 0) for r in shown],
              color=["#999999" if r.get("checkpoint") == "random" else "#3070b0" for r in shown])
    axes.set_yticks(range(len(shown)), labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("top-1 accuracy (%)")
    axes.set_xlim(0, 100)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
