"""Temporal losses (METHODS.md §4) against hand computation."""

from __future__ import annotations

import math

import torch

from avcli.losses.infonce import infonce
from avcli.losses.temporal import (
    FeatureQueue,
    TemporalHeads,
    binary_accuracy,
    contrastive_with_extras,
    direction_loss,
    order_loss,
    speed_loss,
)


def _unit(*rows):
    t = torch.tensor(rows, dtype=torch.float32)
    return t / t.norm(dim=1, keepdim=True)


def test_speed_and_direction_losses_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 3))
    assert math.isclose(speed_loss(logits, torch.tensor([0])).item(), expected, rel_tol=1e-6)
    # logit 0 → p = 0.5 whatever the label: ln 2
    assert math.isclose(direction_loss(torch.tensor([0.0]), torch.tensor([1])).item(), math.log(2), rel_tol=1e-6)
    assert math.isclose(
        direction_loss(torch.tensor([1.0]), torch.tensor([0])).item(), math.log(1 + math.e), rel_tol=1e-6
    )


def test_order_loss_ignores_unplaced_pairs():
    logit = torch.tensor([1.0, 5.0, -1.0], requires_grad=True)
    label = torch.tensor([1, -1, 0])
    loss = order_loss(logit, label)
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-1))) / 2  # both placed pairs are right at |1|
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    loss.backward()
    assert logit.grad[1] == 0
    assert order_loss(torch.tensor([3.0]), torch.tensor([-1])).item() == 0.0
    assert binary_accuracy(torch.tensor([1.0, 5.0, -1.0]), label) == 1.0


def test_contrastive_without_extras_is_one_direction_of_infonce():
    v = _unit([1, 0], [0, 1], [1, 1])
    a = _unit([1, 0.2], [0.1, 1], [1, 0.9])
    both = infonce(v, a, 0.1)
    one_way = (contrastive_with_extras(v, a, 0.1) + contrastive_with_extras(a, v, 0.1)) / 2
    assert torch.allclose(both, one_way, atol=1e-6)


def test_extra_negatives_and_positives_by_hand():
    anchor = _unit([1, 0])
    positive = _unit([1, 0])
    negative = _unit([0, 1]).unsqueeze(0)  # 1×1×2: the same clip reversed, say
    extra_pos = _unit([1, 1]).unsqueeze(0)
    tau = 0.5
    s_pos, s_neg, s_extra = 1 / tau, 0 / tau, (1 / math.sqrt(2)) / tau
    with_negative = contrastive_with_extras(anchor, positive, tau, extra_negatives=negative)
    assert math.isclose(with_negative.item(), -math.log(math.exp(s_pos) / (math.exp(s_pos) + math.exp(s_neg))), rel_tol=1e-6)
    both = contrastive_with_extras(anchor, positive, tau, extra_negatives=negative, extra_positives=extra_pos)
    numerator = math.exp(s_pos) + math.exp(s_extra)
    expected = -math.log(numerator / (numerator + math.exp(s_neg)))
    assert math.isclose(both.item(), expected, rel_tol=1e-5)  # float32


def test_queue_is_fifo_and_returns_nearest_neighbours():
    queue = FeatureQueue(size=3, dim=2)
    assert queue.nearest(_unit([1, 0]), 1) is None
    queue.push(_unit([1, 0], [0, 1]))
    queue.push(_unit([-1, 0], [1, 0.1]))  # overwrites the oldest row ([1, 0])
    assert int(queue.filled) == 3
    assert torch.allclose(queue.features, _unit([1, 0.1], [0, 1], [-1, 0]))
    near = queue.nearest(_unit([1, 0], [0, -1]), 2)
    assert near.shape == (2, 2, 2)
    assert torch.allclose(near[0, 0], _unit([1, 0.1])[0])  # cosine 0.995
    assert torch.allclose(near[1, 0], _unit([-1, 0])[0]) and torch.allclose(near[1, 1], _unit([1, 0.1])[0])  # 0, -0.0995
    assert "features" in queue.state_dict() and "pointer" in queue.state_dict()


def test_heads_shapes():
    heads = TemporalHeads(dim=8, n_speeds=4, hidden=16)
    x = torch.randn(5, 8)
    assert heads.speed(x).shape == (5, 4) and heads.direction(x).shape == (5, 1)
    assert heads.order_logit(x, x.flip(0)).shape == (5,)
