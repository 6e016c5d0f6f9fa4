"""Losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avcli.losses import infonce, retrieval_accuracy


def test_infonce_matches_a_hand_computed_value():
    # Two pairs in 2-D: v1=(1,0), v2=(0,1); a1=(1,0), a2=(0.6,0.8). τ = 0.5.
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    tau = 0.5
    # similarities: v1·a1=1, v1·a2=0.6, v2·a1=0, v2·a2=0.8
    v_to_a = (-math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(1.2)))
              - math.log(math.exp(1.6) / (math.exp(0.0) + math.exp(1.6)))) / 2
    a_to_v = (-math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(0.0)))
              - math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6)))) / 2
    assert infonce(v, a, tau).item() == pytest.approx((v_to_a + a_to_v) / 2, abs=1e-6)


def test_infonce_is_low_for_matched_and_log_b_for_uninformative_pairs():
    v = F.normalize(torch.randn(16, 8), dim=1)
    assert infonce(v, v, 0.05).item() < 0.05
    same = F.normalize(torch.ones(16, 8), dim=1)
    assert infonce(same, same, 0.1).item() == pytest.approx(math.log(16), abs=1e-5)


def test_infonce_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        infonce(torch.randn(4, 8), torch.randn(5, 8), 0.1)


def test_infonce_gradient_pulls_pairs_together():
    v = F.normalize(torch.randn(8, 4), dim=1).requires_grad_()
    a = F.normalize(torch.randn(8, 4), dim=1)
    infonce(v, a, 0.1).backward()
    # a small step against the gradient raises each positive similarity on average
    stepped = v.detach() - 0.01 * v.grad
    assert (stepped * a).sum(1).mean() > (v.detach() * a).sum(1).mean()


def test_retrieval_accuracy_counts_both_directions():
    v = torch.eye(3)
    a = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])  # only pair 0 matches
    assert retrieval_accuracy(v, a) == pytest.approx(1 / 3)
