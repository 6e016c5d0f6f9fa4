"""Linear probe on frozen features: standardised features, multinomial logistic regression (scikit-learn)."""

from __future__ import annotations

import numpy as np
import torch


def linear_probe(
    train_x: torch.Tensor, train_y: list[int], test_x: torch.Tensor, test_y: list[int], c: float = 1.0
) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    classifier.fit(train_x.numpy(), np.asarray(train_y))
    predicted = classifier.predict(test_x.numpy())
    top1 = float((predicted == np.asarray(test_y)).mean())
    return {"top1": round(100 * top1, 2), "n_train": len(train_y), "n_test": len(test_y)}
