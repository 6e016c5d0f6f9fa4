"""Probe classifiers: avcli's torch L-BFGS classifiers against scikit-learn, the reference, in the same run on the
same features, on synthetic Gaussian class clusters (class centres N(0, sep²) per dimension, unit noise, then a
per-feature scale and offset so the standardisation matters as on real features):

  (a) logistic: 200,000 × 512, 400 classes (Kinetics-like; `--full`: the whole 2.4M clips, 4.9 GB of float32
      features) — TorchLogistic (C = 1) against LogisticRegression (lbfgs, C = 1, max_iter 5000), the probe's
      sklearn configuration;
  (b) svm: 16,000 × 2,304, 50 classes (one ESC-50 fold, 10 clips per recording, at AVID's SVM width) —
      TorchLinearSVM (C = 10) against LinearSVC (C = 10, max_iter 1000, the primal solver since rows > features),
      the probe's sklearn configuration.

Each subset is fitted twice: with the probe's stopping rules (the ratio `speedup`), and again with both solvers
taken close to the objective's one optimum (`converged`: tolerances in TIGHT), where equal accuracy is by
construction.

Test rows: 20 % as many, drawn from the same clusters. scikit-learn runs on the first `--sklearn-rows` training rows
of (a) (its float64 copy and speed make the whole set impractical on this machine) and on all of (b); avcli is
timed on that same subset for the ratios, and on the whole set of (a) for its own figures.

Memory: the peak resident set size beyond the features, read from /proc/self/status (VmHWM, the kernel's
high-water mark, reset through /proc/self/clear_refs before each fit) minus the RSS before the fit, while the
features (and the labels) are already resident; on CUDA also torch.cuda.max_memory_allocated. Seconds are the
wall time of `fit` (standardisation included); accuracy is top-1 on the test rows, in %; `objective` is the
training objective at the solution (scikit-learn's computed by avcli's code), how close each stopped to the optimum.

    python benchmarks/probe_classifiers.py                # (a) and (b) at the sizes above
    python benchmarks/probe_classifiers.py --scale 0.1    # a quick run: every row count × 0.1
    python benchmarks/probe_classifiers.py --full         # (a) on 2.4M rows as well (needs ~8 GB of memory)

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avcli.evaluate.torch_linear import Rows, TorchLinearSVM, TorchLogistic  # noqa: E402

MIB = 2**20
# the subsets solved again near the optimum, both sides (the "converged" figures): the default rules (gradient max
# 1e-4; liblinear's relative 1e-4) stop both solvers short of it, at points whose accuracy differs by a point or more
TIGHT = {"sklearn": {"logistic": {"tol": 1e-6}, "svm": {"tol": 1e-6, "max_iter": 100_000}},
         "avcli": {"logistic": {"tol": 1e-6}, "svm": {"tol": 1e-8, "max_iter": 5000}}}


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


class PeakMemory:
    """The peak RSS above the level at entry (the kernel's high-water mark, reset at entry), and on CUDA the peak
    allocated device memory."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
        self.start = _status("VmRSS")
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.cuda_start = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc):
        self.rss_mib = round((_status("VmHWM") - self.start) / MIB, 1)
        if self.device.type == "cuda":
            self.cuda_mib = round((torch.cuda.max_memory_allocated(self.device) - self.cuda_start) / MIB, 1)


def clusters(n: int, dim: int, classes: int, sep: float, seed: int, test: int) -> tuple:
    """(train x, train y, test x, test y): float32 rows made in place, block by block, so the largest size needs
    no temporary as big as the features."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * sep
    scale = torch.rand(dim, generator=g) * 4 + 0.25  # feature spreads 0.25-4.25
    offset = torch.randn(dim, generator=g) * 3  # and means of a few spreads, like ReLU features

    def make(rows: int) -> tuple[torch.Tensor, np.ndarray]:
        y = torch.randint(0, classes, (rows,), generator=g)
        x = torch.empty(rows, dim)
        for lo in range(0, rows, 65536):
            block = x[lo : lo + 65536]
            block.normal_(generator=g).add_(centres[y[lo : lo + 65536]]).mul_(scale).add_(offset)
        return x, y.numpy()

    return (*make(n), *make(test))


def accuracy(model, x: torch.Tensor, y: np.ndarray) -> float:
    return round(100 * float((model.classes_[model.scores(x).argmax(axis=1)] == y).mean()), 2)


def fit_torch(kind: str, c: float, x, y, xt, yt, device: torch.device, tight: bool = False) -> dict:
    settings = TIGHT["avcli"][kind] if tight else {}
    model = (TorchLogistic if kind == "logistic" else TorchLinearSVM)(c, device=device, **settings)
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        model.fit(x, y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
    out = {"seconds": round(seconds, 2), "peak_rss_mib": memory.rss_mib, "top1": accuracy(model, xt, yt),
           "objective": round(model.loss_, 6), "iterations": model.n_iter_, "evaluations": model.n_evals_,
           "converged": model.converged_}
    if device.type == "cuda":
        out["peak_cuda_mib"] = memory.cuda_mib
    return out


class SklearnScores:
    """The scikit-learn pipeline behind the interface `accuracy` reads (classes_, scores)."""

    def __init__(self, pipeline):
        self.pipeline, self.classes_ = pipeline, pipeline.classes_

    def scores(self, x: torch.Tensor) -> np.ndarray:
        return self.pipeline.decision_function(x.numpy())


def fit_sklearn(kind: str, c: float, x, y, xt, yt, tight: bool = False) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    # the probe's sklearn configurations (avcli/evaluate/classifiers.py)
    settings = {"logistic": {"max_iter": 5000}, "svm": {"max_iter": 1000}}[kind]
    settings.update(TIGHT["sklearn"][kind] if tight else {})
    model = (LogisticRegression(C=c, **settings) if kind == "logistic"
             else LinearSVC(C=c, dual=x.shape[1] > x.shape[0], **settings))
    pipeline = make_pipeline(StandardScaler(), model)
    with PeakMemory(torch.device("cpu")) as memory, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        started = time.perf_counter()
        pipeline.fit(x.numpy(), y)
        seconds = time.perf_counter() - started
    n_iter = np.asarray(model.n_iter_).max()
    return {"seconds": round(seconds, 2), "peak_rss_mib": memory.rss_mib,
            "top1": accuracy(SklearnScores(pipeline), xt, yt), "objective": objective(kind, c, model, x, y),
            "iterations": int(n_iter),
            "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught)}


def objective(kind: str, c: float, model, x, y) -> float:
    """scikit-learn's solution's objective, as avcli's classifier of that kind computes it (the `objective` of
    avcli's own fits): how near each solver stopped to the common optimum."""
    ours = (TorchLogistic if kind == "logistic" else TorchLinearSVM)(c)
    rows = Rows(x, np.searchsorted(model.classes_, y), torch.device("cpu"), len(model.classes_))
    theta = torch.cat([torch.as_tensor(model.coef_).T, torch.as_tensor(model.intercept_)[None]]).double()
    return round(ours._evaluate(theta, rows)[0], 6)


def compare(kind: str, c: float, x, y, xt, yt, subset: dict, device: torch.device) -> dict:
    """sklearn and avcli on a subset (`rows`: the first rows; or `classes`: the rows of the first classes, tested on
    those classes' test rows); avcli on the whole set too."""
    if "rows" in subset:
        sub_x, sub_y, sub_xt, sub_yt = x[: subset["rows"]], y[: subset["rows"]], xt, yt
    else:
        keep, keep_test = y < subset["classes"], yt < subset["classes"]
        sub_x, sub_y, sub_xt, sub_yt = x[torch.from_numpy(keep)], y[keep], xt[torch.from_numpy(keep_test)], yt[keep_test]
    out = {"train_rows": x.shape[0], "dim": x.shape[1], "classes": int(len(np.unique(y))), "test_rows": xt.shape[0],
           "c": c, "sklearn_subset": {**subset, "train_rows": sub_x.shape[0], "test_rows": sub_xt.shape[0]}}
    out["sklearn"] = fit_sklearn(kind, c, sub_x, sub_y, sub_xt, sub_yt)
    out["avcli_on_subset"] = fit_torch(kind, c, sub_x, sub_y, sub_xt, sub_yt, device)
    reference, ours = out["sklearn"], out["avcli_on_subset"]
    out["speedup"] = round(reference["seconds"] / ours["seconds"], 2)
    out["top1_difference"] = round(ours["top1"] - reference["top1"], 2)
    # both solved near their common optimum (strictly convex objectives: one solution), so equal accuracy is by
    # construction and the ratio is the solvers' speed at it
    tight = {"sklearn": fit_sklearn(kind, c, sub_x, sub_y, sub_xt, sub_yt, tight=True),
             "avcli": fit_torch(kind, c, sub_x, sub_y, sub_xt, sub_yt, device, tight=True)}
    tight.update(settings={side: TIGHT[side][kind] for side in TIGHT},
                 speedup=round(tight["sklearn"]["seconds"] / tight["avcli"]["seconds"], 2),
                 top1_difference=round(tight["avcli"]["top1"] - tight["sklearn"]["top1"], 2))
    out["converged"] = tight
    out["avcli"] = fit_torch(kind, c, x, y, xt, yt, device)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every row count (0.1: a quick run)")
    parser.add_argument("--full", action="store_true", help="(a) on the whole 2.4M Kinetics-like rows as well")
    parser.add_argument("--only", choices=("logistic", "svm"), help="run one of (a) and (b)")
    parser.add_argument("--sklearn-rows", type=int, default=20000, help="(a): scikit-learn's subset (× scale)")
    parser.add_argument("--svm-sklearn-classes", type=int, default=5,
                        help="(b): scikit-learn's subset, the rows of the first classes (LinearSVC takes minutes "
                             "per class on all 16,000 rows)")
    parser.add_argument("--logistic-sep", type=float, default=0.15, help="(a): spread of the class centres")
    parser.add_argument("--svm-sep", type=float, default=0.08, help="(b): spread of the class centres")
    parser.add_argument("--device", default="cpu", help="avcli's device: cpu or cuda[:N]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = lambda n: max(1, round(n * args.scale))  # noqa: E731
    report: dict = {"benchmark": "probe_classifiers", "scale": args.scale, "device": str(device),
                    "threads": torch.get_num_threads(), "memory": "peak RSS beyond the features (VmHWM reset), MiB"}
    TorchLogistic().fit(torch.randn(256, 8), np.arange(256) % 4)  # warm-up: first-call costs out of the timings
    if args.only in (None, "logistic"):
        n = rows(2_400_000 if args.full else 200_000)
        x, y, xt, yt = clusters(n, 512, 400, args.logistic_sep, args.seed, rows(40_000))
        report["logistic"] = compare("logistic", 1.0, x, y, xt, yt, {"rows": min(rows(args.sklearn_rows), n)}, device)
        if args.full:  # the 200k figure beside the full one, on the first 200k rows
            report["logistic"]["avcli_200k"] = fit_torch("logistic", 1.0, x[:rows(200_000)], y[:rows(200_000)], xt,
                                                         yt, device)
        del x, y, xt, yt
    if args.only in (None, "svm"):
        n = rows(16_000)
        x, y, xt, yt = clusters(n, 2304, 50, args.svm_sep, args.seed + 1, rows(4_000))
        report["svm"] = compare("svm", 10.0, x, y, xt, yt, {"classes": args.svm_sklearn_classes}, device)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
