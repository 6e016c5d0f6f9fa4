"""The torch probe classifiers (avcli/evaluate/torch_linear.py): their objectives and gradients against a direct
computation, their answers against scikit-learn's (the reference) on made-up rows, on the synthetic task's features
and on the real sonic-pi folds, and the same fit whatever the blocks or chunks the rows come in."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from avcli.cli import run
from avcli.evaluate import torch_linear
from avcli.evaluate.classifiers import LogisticProbe, SVMProbe, averaged_top1
from avcli.evaluate.torch_linear import Rows, TorchLinearSVM, TorchLogistic

from conftest import tiny_recipe_dict

SONIC_PI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "audio_sonic_pi" / "samples"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVCLI_CACHE_DIR", str(tmp_path / "cache"))


def _clusters(n: int, dim: int, classes: int, sep: float, seed: int = 0):
    """Gaussian class clusters with uneven feature scales and offsets (so the standardisation matters)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * sep
    scale, offset = torch.rand(dim, generator=g) * 3 + 0.1, torch.randn(dim, generator=g) * 5
    y = torch.arange(n) % classes
    x = (centres[y] + torch.randn(n, dim, generator=g)) * scale + offset
    return x, y.numpy()


# ------------------------------------------------------------------------------------- objective and gradient


def _direct(kind: str, theta: torch.Tensor, x: torch.Tensor, cols: torch.Tensor, c: float) -> torch.Tensor:
    """scikit-learn's objective written out plainly in float64 (StandardScaler's population std)."""
    xs = (x.double() - x.double().mean(0)) / x.double().std(0, unbiased=False)
    z = xs @ theta[:-1] + theta[-1]
    n = len(cols)
    if kind == "logistic" and z.shape[1] == 1:  # binary: log(1 + e^z) − y·z, intercept not penalised
        return (torch.log1p(z[:, 0].exp()) - cols * z[:, 0]).mean() + theta[:-1].square().sum() / (2 * c * n)
    if kind == "logistic":
        return torch.nn.functional.cross_entropy(z, cols) + theta[:-1].square().sum() / (2 * c * n)
    sign = torch.nn.functional.one_hot(cols, z.shape[1]).double() * 2 - 1 if z.shape[1] > 1 else (cols * 2 - 1)[:, None]
    hinge = (1 - sign * z).clamp_min(0).square().sum()
    return (0.5 * theta.square().sum() + c * hinge) / (c * n)  # liblinear: the bias is a penalised feature


@pytest.mark.parametrize("kind, classes", [("logistic", 4), ("logistic", 2), ("svm", 4), ("svm", 2)])
def test_objective_and_gradient_at_a_point_are_the_direct_computation(kind, classes, monkeypatch):
    x, y = _clusters(90, 7, classes, 1.0)
    monkeypatch.setattr(torch_linear, "BLOCK_FLOATS", {"cpu": 7 * 16, "cuda": 7 * 16})  # 16-row blocks: 6 of them
    model = (TorchLogistic if kind == "logistic" else TorchLinearSVM)(c=0.7)
    rows = Rows(x, y, torch.device("cpu"), classes)
    assert rows.rows_per_block == 16 and len(list(rows)) == 6
    columns = model._columns(classes)
    theta = torch.randn(8, columns, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.3
    loss, grad = model._evaluate(theta, rows)
    reference = theta.clone().requires_grad_(True)
    expected = _direct(kind, reference, x, torch.as_tensor(y), 0.7)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(grad, reference.grad, rtol=1e-5, atol=1e-7)


def test_standardisation_survives_a_large_offset():
    """A feature whose mean is 10⁴ spreads: folded into the weights, float32 would cancel it to noise."""
    x, y = _clusters(400, 5, 3, 1.0)
    shifted = x.clone()
    shifted[:, 0] = shifted[:, 0] * 1e-3 + 10.0  # mean 10, spread about 1e-3
    model = TorchLogistic(1.0).fit(shifted, y)
    reference = TorchLogistic(1.0).fit(torch.cat([x[:, :1] * 1e-3, shifted[:, 1:]], dim=1), y)
    assert model.converged_ and torch.allclose(model.coef_, reference.coef_, atol=2e-3)


# ------------------------------------------------------------------------------------- against scikit-learn


@pytest.mark.parametrize("classes", [2, 5])
def test_the_fit_is_scikit_learns_solution(classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    x, y = _clusters(1500, 16, classes, 0.4)
    xs = StandardScaler().fit_transform(x.numpy().astype(np.float64))
    for ours, theirs in ((TorchLogistic(1.0, tol=1e-5), LogisticRegression(C=1.0, max_iter=5000, tol=1e-8)),
                         (TorchLinearSVM(1.0), LinearSVC(C=1.0, tol=1e-8, max_iter=100000))):
        ours.fit(x, y)
        theirs.fit(xs, y)
        assert ours.converged_
        assert np.abs(ours.coef_.numpy() - theirs.coef_.T).max() < 2e-3 * np.abs(theirs.coef_).max()
        assert np.abs(ours.intercept_.numpy() - theirs.intercept_).max() < 2e-3 * max(1, np.abs(theirs.intercept_).max())


def test_blocks_chunks_and_repeats_give_the_same_fit(monkeypatch):
    x, y = _clusters(600, 12, 5, 0.5)
    videos = x.reshape(200, 3, 12)  # 3 clips of each of 200 videos, one label per video
    labels = y[::3]

    class Chunked:  # the sharded-feature interface: .shape and .chunks() in order
        shape = videos.shape

        def chunks(self):
            yield from torch.split(videos, [50, 120, 30])

    whole = TorchLinearSVM(1.0).fit(videos, labels)
    again = TorchLinearSVM(1.0).fit(videos, labels)
    assert torch.equal(whole.coef_, again.coef_)  # deterministic: nothing drawn, one order
    monkeypatch.setattr(torch_linear, "STANDARDISED_BYTES", 0)  # nothing kept: every pass reads the chunks
    chunked = TorchLinearSVM(1.0).fit(Chunked(), labels)
    assert torch.allclose(whole.coef_, chunked.coef_, atol=1e-5)
    assert averaged_top1(whole, videos, list(labels)) == averaged_top1(chunked, videos, list(labels))
    with pytest.raises(ValueError, match="at least two classes"):
        TorchLogistic().fit(x[:10], np.zeros(10))


def _same_accuracy(train, labels, test, test_labels, c=1.0):
    """(torch top-1, scikit-learn top-1) of the linear probe and of the SVM, Video@1 style."""
    found = {}
    for name, ours, theirs in (("linear", TorchLogistic(c), LogisticProbe(c)), ("svm", TorchLinearSVM(c), SVMProbe(c))):
        found[name] = (averaged_top1(ours.fit(train, labels), test, test_labels),
                       averaged_top1(theirs.fit(train, labels), test, test_labels))
    return found


def test_synthetic_task_features_give_scikit_learns_accuracy(small_world, tmp_path, write_recipe, capsys):
    """The probe's own features of the synthetic world (random-init tiny encoders), through the CLI both ways."""
    recipe = write_recipe(tiny_recipe_dict(small_world, tmp_path / "run"))
    base = ["probe", "--task", "synthetic", "--data-root", str(small_world), "--checkpoint", "random", "--recipe",
            str(recipe), "--clips", "2", "--cache-dir", str(tmp_path / "features")]
    tops = {}
    for classifier in ("sklearn", "torch"):
        assert run([*base, "--classifier", classifier]) == 0
        records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert [r["classifier"] for r in records] == [classifier, classifier]
        tops[classifier] = {r["modality"]: r["top1"] for r in records}
    for modality in ("video", "audio"):
        assert abs(tops["torch"][modality] - tops["sklearn"][modality]) <= 1.0, tops
    assert run([*base, "--classifier", "lbfgs"]) == 2
    assert "--classifier lbfgs: choose torch or sklearn" in capsys.readouterr().err


@pytest.fixture(scope="module")
def sonic_features(tmp_path_factory):
    """Audio features of the real sonic-pi set (165 recordings, 14 classes, 5 folds) from a random-init tiny audio
    encoder: the probe's standard audio sampling at a 1 s window, the pooled feature, computed once."""
    from avcli.evaluate.clip_features import extract_clip_features
    from avcli.evaluate.clip_sampling import standard_sampling
    from avcli.evaluate.encoders import load_eval_encoders
    from avcli.evaluate.probe import fit_frontend_on
    from avcli.tasks import load_task

    root = tmp_path_factory.mktemp("sonic")
    files = sorted(SONIC_PI.glob("*.flac"))
    (root / "sonic.csv").write_text("path,label\n" + "".join(f"{p},{p.name.split('_')[0]}\n" for p in files))
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(root / "unused", root / "run")))
    task = load_task("csv", root / "sonic.csv")
    encoders = load_eval_encoders("random", recipe)
    fit_frontend_on(encoders, task, audio_seconds=1.0)
    sampling = standard_sampling(True, train_clips=4, test_clips=4, audio_seconds=1.0)
    names = {"audio"}
    cpu = torch.device("cpu")
    train = extract_clip_features(encoders, task.videos, sampling.train, names, cpu, True, 1.0)
    test = extract_clip_features(encoders, task.videos, sampling.tests[0][1], names, cpu, True, 1.0)
    return task, train, test


@pytest.mark.slow  # about 90 s on two shared cores: 165 recordings decoded and encoded (60 s), 20 fits
@pytest.mark.skipif(not SONIC_PI.exists(), reason="../shared/data/audio_sonic_pi is not beside the repo")
def test_sonic_pi_folds_give_scikit_learns_accuracy(sonic_features):
    task, train, test = sonic_features
    where = {v.path: i for i, v in enumerate(task.videos)}
    found = {(name, probe): [] for name in ("audio",) for probe in ("linear", "svm")}
    for fold in task.split_ids:
        split = task.select(fold)
        tr = torch.tensor([where[v.path] for v in split.split("train")])
        te = torch.tensor([where[v.path] for v in split.split("test")])
        labels, test_labels = [v.label for v in split.split("train")], [v.label for v in split.split("test")]
        for name in ("audio",):
            for probe, pair in _same_accuracy(train[name][tr], labels, test[name][te], test_labels).items():
                found[(name, probe)].append(pair)
    for key, pairs in found.items():
        ours, theirs = statistics.fmean(p[0] for p in pairs), statistics.fmean(p[1] for p in pairs)
        assert abs(ours - theirs) <= 1.0, (key, pairs)
        assert ours > 100 / 14 + 10, (key, pairs)  # well above chance: the comparison means something


def test_the_torch_probe_streams_its_training_features_from_the_cache(small_world, tmp_path, write_recipe, capsys,
                                                                      monkeypatch):
    """With a feature cache and per-clip features (standard sampling; mean sampling averages them shard by shard
    first), the torch classifiers read the training features shard by shard (memory: a shard plus the
    standardised rows that fit), not as one tensor materialised for them."""
    import avcli.evaluate.torch_linear as torch_linear
    from avcli.evaluate.feature_shards import ShardedFeature

    seen, original = [], torch_linear.Rows.__init__

    def spy(self, features, *args, **kwargs):
        seen.append(type(features))
        original(self, features, *args, **kwargs)

    monkeypatch.setattr(torch_linear.Rows, "__init__", spy)
    recipe = write_recipe(tiny_recipe_dict(small_world, tmp_path / "run"))
    assert run(["probe", "--task", "synthetic", "--data-root", str(small_world), "--checkpoint", "random",
                "--recipe", str(recipe), "--sampling", "standard", "--train-clips", "2", "--test-clips", "2",
                "--random-test-clips", "2", "--cache-dir", str(tmp_path / "features")]) == 0
    capsys.readouterr()
    assert seen == [ShardedFeature, ShardedFeature]  # video and audio
