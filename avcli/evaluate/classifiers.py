"""Classifiers on frozen clip features (METHODS.md §6), behind one small interface:

`fit(train, labels)` with `train` V×K×D (K clips of each of V videos) and one label per video, then
`scores(x)` N×C for N clips over the C classes seen in training (`classes_`); higher is more likely, and a
video's scores are the mean of its clips' (probabilities, SVM margins or kNN votes).

- `LogisticProbe`: standardised features, multinomial logistic regression (the linear probe);
- `SVMProbe`: standardised features, one-vs-rest linear SVM (the AVID audio protocol, C from the task);
- `KNNProbe`: cosine similarity to each training video's mean feature, the k nearest vote with weight
  exp(similarity / temperature).

`logistic_probe` / `svm_probe` pick the implementation: `torch` (avcli/evaluate/torch_linear.py: the same
objectives by L-BFGS on the probe's device, the default) or `sklearn` (the classes here, the reference).
"""

from __future__ import annotations

import numpy as np
import torch


def _clips_and_labels(train: torch.Tensor, labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    v, k, d = train.shape
    return train.reshape(v * k, d).numpy(), np.repeat(np.asarray(labels), k)


class LogisticProbe:
    def __init__(self, c: float = 1.0):
        self.c = c

    def fit(self, train: torch.Tensor, labels: list[int]) -> "LogisticProbe":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x, y = _clips_and_labels(train, labels)
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=self.c, max_iter=5000)).fit(x, y)
        self.classes_ = self.model.classes_
        return self

    def scores(self, x: torch.Tensor) -> np.ndarray:
        return self.model.predict_proba(x.numpy())


class SVMProbe:
    def __init__(self, c: float = 1.0, max_iter: int = 1000):
        self.c, self.max_iter = c, max_iter

    def fit(self, train: torch.Tensor, labels: list[int]) -> "SVMProbe":
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC

        x, y = _clips_and_labels(train, labels)
        # LinearSVC is one-vs-rest; the dual solver suits features wider than the number of clips (AVID's layers)
        self.model = make_pipeline(StandardScaler(), LinearSVC(C=self.c, dual=x.shape[1] > x.shape[0],
                                                               max_iter=self.max_iter))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the protocol's fixed C and budget, as published
            self.model.fit(x, y)
        self.classes_ = self.model.classes_
        return self

    def scores(self, x: torch.Tensor) -> np.ndarray:
        margins = self.model.decision_function(x.numpy())
        return np.stack([-margins, margins], axis=1) if margins.ndim == 1 else margins


CLASSIFIERS = ("torch", "sklearn")


def logistic_probe(classifier: str, c: float, device: torch.device | str = "cpu"):
    if classifier == "sklearn":
        return LogisticProbe(c)
    from avcli.evaluate.torch_linear import TorchLogistic

    return TorchLogistic(c, device=device)


def svm_probe(classifier: str, c: float, max_iter: int, device: torch.device | str = "cpu"):
    if classifier == "sklearn":
        return SVMProbe(c, max_iter)
    from avcli.evaluate.torch_linear import TorchLinearSVM

    return TorchLinearSVM(c, max_iter=max_iter, device=device)


class KNNProbe:
    def __init__(self, k: int = 20, temperature: float = 0.07):
        self.k, self.temperature = k, temperature

    def fit(self, train: torch.Tensor, labels: list[int]) -> "KNNProbe":
        self.bank = torch.nn.functional.normalize(train.mean(dim=1), dim=1)
        self.classes_ = np.unique(labels)
        self.columns = torch.as_tensor(np.searchsorted(self.classes_, labels))
        return self

    def scores(self, x: torch.Tensor) -> np.ndarray:
        similarity = torch.nn.functional.normalize(x, dim=1) @ self.bank.T
        top, where = similarity.topk(min(self.k, self.bank.shape[0]), dim=1)
        votes = torch.zeros(x.shape[0], len(self.classes_))
        votes.scatter_add_(1, self.columns[where], (top / self.temperature).exp())
        return (votes / votes.sum(dim=1, keepdim=True)).numpy()


def clip_top1(probe, features: torch.Tensor, labels: list[int]) -> float:
    """Each of the K clips of every video scored on its own (Clip@1), in %."""
    v, k, d = features.shape
    predicted = probe.classes_[probe.scores(features.reshape(v * k, d)).argmax(axis=1)]
    return round(100 * float((predicted == np.repeat(np.asarray(labels), k)).mean()), 2)


def averaged_top1(probe, features: torch.Tensor, labels: list[int]) -> float:
    """Scores averaged over each video's K clips, then the top class (Video@1; per recording for audio), in %."""
    v, k, d = features.shape
    scores = probe.scores(features.reshape(v * k, d)).reshape(v, k, -1).mean(axis=1)
    predicted = probe.classes_[scores.argmax(axis=1)]
    return round(100 * float((predicted == np.asarray(labels)).mean()), 2)
