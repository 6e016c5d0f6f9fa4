"""AVTS and Robust-xID losses against values computed by hand (python loops and `math`, never the code under test)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avcli.losses.avts import (FusedSyncClassifier, avts_margin_loss, best_threshold, cross_validated_sync_accuracy,
                               fused_sync_loss, sync_accuracy)
from avcli.losses.infonce import infonce
from avcli.losses.robust import (
    AgreementStats,
    faulty_positive_weights,
    pair_agreement,
    robust_xid_loss,
    soft_target_pair,
    soft_target_xent,
    soft_targets,
    weighted_mean,
)


# ---------------------------------------------------------------------------------------------- hand helpers


def _dot(x, y):
    return sum(p * q for p, q in zip(x, y))


def _softmax(row):
    top = max(row)
    e = [math.exp(r - top) for r in row]
    return [x / sum(e) for x in e]


def _phi(z):
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _soft_xent_row(logit_row, target_row):
    top = max(logit_row)
    log_z = top + math.log(sum(math.exp(x - top) for x in logit_row))
    return -sum(t * (x - log_z) for t, x in zip(target_row, logit_row))


def _assert_matrix(actual: torch.Tensor, expected, abs_tol=1e-6):
    assert actual.shape == (len(expected), len(expected[0]))
    for i, row in enumerate(expected):
        for j, value in enumerate(row):
            assert actual[i, j].item() == pytest.approx(value, abs=abs_tol), (i, j)


# ---------------------------------------------------------------------------------------------- AVTS

# Three pairs in 2-D: a positive at distance √0.8, a negative at √2 (beyond η), a negative at √0.4 (inside η).
V3 = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
A3 = [[0.6, 0.8], [1.0, 0.0], [0.8, 0.6]]
Y3 = [True, False, False]


def test_avts_margin_loss_matches_a_hand_computed_value():
    eta = 0.99
    # pair 0 positive: d² = 0.4² + 0.8² = 0.8; pair 1 negative: d = √2 > η → 0; pair 2 negative: d = √(0.2²+0.6²)
    expected = (0.8 + max(0.0, eta - math.sqrt(2.0)) ** 2 + (eta - math.sqrt(0.4)) ** 2) / 3
    loss = avts_margin_loss(torch.tensor(V3), torch.tensor(A3), torch.tensor(Y3), margin=eta)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_avts_margin_loss_gradients_by_hand():
    v = torch.tensor(V3, requires_grad=True)
    a = torch.tensor(A3, requires_grad=True)
    avts_margin_loss(v, a, torch.tensor(Y3), margin=0.99).backward()
    # positive: ∂/∂v (d²/3) = 2(v−a)/3
    assert v.grad[0].tolist() == pytest.approx([2 * 0.4 / 3, 2 * -0.8 / 3], abs=1e-6)
    # negative beyond the margin: no gradient at all
    assert v.grad[1].tolist() == [0.0, 0.0] and a.grad[1].tolist() == [0.0, 0.0]
    # negative inside the margin: ∂/∂v (η−d)²/3 = −2(η−d)/3 · (v−a)/d, pushing v away from a
    d = math.sqrt(0.4)
    coef = -2 * (0.99 - d) / 3 / d
    assert v.grad[2].tolist() == pytest.approx([coef * 0.2, coef * -0.6], abs=1e-6)
    assert a.grad[2].tolist() == pytest.approx([-coef * 0.2, coef * 0.6], abs=1e-6)


def test_avts_margin_loss_is_finite_for_coinciding_negative():
    v = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss = avts_margin_loss(v, torch.tensor([[1.0, 0.0]]), torch.tensor([False]), margin=0.5)
    loss.backward()
    assert loss.item() == pytest.approx(0.25)
    assert torch.isfinite(v.grad).all()


def test_avts_margin_loss_rejects_bad_shapes():
    with pytest.raises(ValueError):
        avts_margin_loss(torch.zeros(3, 2), torch.zeros(2, 2), torch.tensor([True, False, True]))
    with pytest.raises(ValueError):
        avts_margin_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([True, False]))



def test_best_threshold_and_its_cross_validated_accuracy_by_hand():
    score, positive = torch.tensor([3.0, 1.0, 2.0, 0.0]), torch.tensor([True, False, True, False])
    # candidates -1, 0.5, 1.5, 2.5, 4 classify 2, 3, 4, 3, 2 pairs right
    assert best_threshold(score, positive) == pytest.approx(1.5)
    # equally good candidates: the middle one (here -1, 0.5 and 2 on the negatives 1, 0 → 2 is the only best)
    assert best_threshold(torch.tensor([1.0, 0.0]), torch.tensor([False, False])) == pytest.approx(2.0)
    assert best_threshold(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([True, True, True])) == pytest.approx(-1.0)
    # stratified folds: fold 0 = pairs 0, 1 (3 in sync, 1 not), fold 1 = pairs 2, 3 (2 in sync, 0 not); fold 0
    # gets t = 1 from fold 1 → both right; fold 1 gets t = 2 from fold 0 → 2 wrong (not > 2), 0 right: 3 of 4
    assert cross_validated_sync_accuracy(score, positive) == pytest.approx(0.75)
    separable = torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7, 0.3])
    assert cross_validated_sync_accuracy(separable, torch.tensor([True, False] * 3)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 4 pairs"):
        cross_validated_sync_accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.bool))

def test_sync_accuracy_thresholds_distance_at_half_the_margin():
    # distances √0.8 ≈ 0.894, √2, √0.4 ≈ 0.632, all ≥ 0.495 → all predicted "out of sync": pair 0 is wrong
    assert sync_accuracy(torch.tensor(V3), torch.tensor(A3), torch.tensor(Y3), 0.99) == pytest.approx(2 / 3)
    # a margin of 2 puts the threshold at 1: pairs 0 and 2 are predicted in sync → pairs 0, 1 right, pair 2 wrong
    assert sync_accuracy(torch.tensor(V3), torch.tensor(A3), torch.tensor(Y3), 2.0) == pytest.approx(2 / 3)
    assert sync_accuracy(torch.tensor(V3), torch.tensor(A3), torch.tensor([True, False, True]), 2.0) == 1.0
    # a distance exactly η/2 counts as out of sync (strict rule)
    tie = sync_accuracy(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0]]), torch.tensor([False]), 1.0)
    assert tie == 1.0


def test_fused_sync_classifier_with_hand_set_weights():
    head = FusedSyncClassifier(dim=1, hidden=2)
    with torch.no_grad():
        head.net[0].weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))  # h = relu(v−a), relu(a−v)
        head.net[0].bias.zero_()
        head.net[2].weight.copy_(torch.tensor([[-2.0, -3.0]]))
        head.net[2].bias.fill_(1.0)
    v = torch.tensor([[0.5], [0.0], [1.0]])
    a = torch.tensor([[0.5], [1.0], [0.0]])
    # pair 0: h=(0,0) → 1; pair 1: h=(0,1) → 1−3 = −2; pair 2: h=(1,0) → 1−2 = −1
    assert head(v, a).tolist() == pytest.approx([1.0, -2.0, -1.0])


def test_fused_sync_loss_matches_binary_cross_entropy_by_hand():
    logits = torch.tensor([2.0, -1.0, 0.5])
    positive = torch.tensor([True, False, False])
    # −log σ(2), −log(1−σ(−1)) = log(1+e^{−1}), −log(1−σ(0.5)) = log(1+e^{0.5})
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(0.5))) / 3
    assert fused_sync_loss(logits, positive).item() == pytest.approx(expected, abs=1e-6)
    assert fused_sync_loss(logits[:, None], positive).item() == pytest.approx(expected, abs=1e-6)


def test_fused_sync_classifier_trains_end_to_end():
    torch.manual_seed(0)
    head = FusedSyncClassifier(dim=4, hidden=8)
    v = F.normalize(torch.randn(6, 4), dim=1)
    a = F.normalize(torch.randn(6, 4), dim=1)
    loss = fused_sync_loss(head(v, a), torch.tensor([True, False] * 3))
    loss.backward()
    assert head.net[0].weight.grad is not None and torch.isfinite(loss)


# ---------------------------------------------------------------------------------------------- weights


def test_faulty_positive_weights_match_the_formula_by_hand():
    s = [0.2, 0.5, 0.8]
    mu, sigma, kappa, w_min = 0.5, 0.2, 0.5, 0.25
    expected = [w_min + (1 - w_min) * _phi((x - mu) / (sigma * math.sqrt(kappa))) for x in s]
    got = faulty_positive_weights(torch.tensor(s), mu, sigma)
    assert got.tolist() == pytest.approx(expected, abs=1e-6)
    assert got[1].item() == pytest.approx(0.625, abs=1e-6)  # at the mean Φ = ½
    # δ = 1 moves the threshold to μ + σ = 0.7; κ = 2, w_min = 0.1
    expected = [0.1 + 0.9 * _phi((x - 0.7) / (0.2 * math.sqrt(2.0))) for x in s]
    got = faulty_positive_weights(torch.tensor(s), torch.tensor(mu), torch.tensor(sigma), delta=1.0, kappa=2.0,
                                  w_min=0.1)
    assert got.tolist() == pytest.approx(expected, abs=1e-6)


def test_faulty_positive_weights_carry_no_gradient():
    s = torch.tensor([0.1, 0.9], requires_grad=True)
    sigma = torch.tensor(0.3, requires_grad=True)
    w = faulty_positive_weights(s * 1.0, 0.5, sigma)
    assert not w.requires_grad and w.grad_fn is None


def test_weighted_mean_by_hand_and_weights_detached():
    losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    weights = torch.tensor([1.0, 0.0, 3.0], requires_grad=True)
    out = weighted_mean(losses, weights)
    assert out.item() == pytest.approx((1 * 1 + 0 * 2 + 3 * 3) / 4)
    out.backward()
    assert losses.grad.tolist() == pytest.approx([0.25, 0.0, 0.75])
    assert weights.grad is None
    assert weighted_mean(torch.tensor([1.0, 2.0]), torch.zeros(2)).item() == 0.0


def test_pair_agreement_is_the_detached_row_dot_product():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    a = torch.tensor([[0.6, 0.8], [0.6, 0.8]])
    s = pair_agreement(v, a)
    assert s.tolist() == pytest.approx([0.6, 0.8]) and not s.requires_grad


def test_agreement_stats_ema_sequence_by_hand():
    stats = AgreementStats(momentum=0.9)
    assert not stats.initialized
    with pytest.raises(RuntimeError):
        _ = stats.mu
    stats.update(torch.tensor([0.2, 0.4]))  # first batch: mean 0.3, population std 0.1, taken directly
    assert (stats.mu, stats.sigma) == pytest.approx((0.3, 0.1))
    stats.update(torch.tensor([0.6, 1.0]))  # batch mean 0.8, std 0.2
    mu2, sigma2 = 0.9 * 0.3 + 0.1 * 0.8, 0.9 * 0.1 + 0.1 * 0.2
    assert (stats.mu, stats.sigma) == pytest.approx((mu2, sigma2))  # 0.35, 0.11
    stats.update(torch.tensor([0.5]))  # a single score: mean 0.5, std 0
    mu3, sigma3 = 0.9 * mu2 + 0.1 * 0.5, 0.9 * sigma2 + 0.1 * 0.0
    assert (stats.mu, stats.sigma) == pytest.approx((mu3, sigma3))  # 0.365, 0.099

    restored = AgreementStats()
    restored.load_state_dict(stats.state_dict())
    assert (restored.mu, restored.sigma, restored.momentum, restored.count) == pytest.approx((mu3, sigma3, 0.9, 3))
    restored.update(torch.tensor([0.0, 1.0]))  # mean 0.5, std 0.5
    assert restored.mu == pytest.approx(0.9 * mu3 + 0.1 * 0.5)
    assert restored.sigma == pytest.approx(0.9 * sigma3 + 0.1 * 0.5)


def test_agreement_stats_default_momentum():
    stats = AgreementStats()
    stats.update(torch.tensor([1.0, 1.0]))
    stats.update(torch.tensor([0.0, 0.0]))
    assert stats.mu == pytest.approx(0.99) and stats.sigma == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------- soft targets

# v1=(1,0), v2=(0,1); a1=(0.8,0.6), a2=(0,1): s11 = 0.8, s22 = 1.
V2 = [[1.0, 0.0], [0.0, 1.0]]
A2 = [[0.8, 0.6], [0.0, 1.0]]
TAU_S, TAU_T, LAM = 0.5, 0.25, 0.3


def _hand_targets(score_fn, n=2, lam=LAM):
    out = []
    for i in range(n):
        s_row = _softmax([score_fn(i, j) for j in range(n)])
        out.append([(1 - lam) * (1.0 if i == j else 0.0) + lam * s_row[j] for j in range(n)])
    return out


def test_bootstrap_targets_by_hand():
    expected = _hand_targets(lambda i, j: _dot(V2[i], V2[j]) / TAU_S)
    got = soft_targets("bootstrap", torch.tensor(V2), torch.tensor(A2), lam=LAM, tau_s=TAU_S, tau_t=TAU_T)
    _assert_matrix(got, expected)
    # row 0 explicitly: softmax(2, 0) = (e²/(e²+1), 1/(e²+1))
    p = math.exp(2) / (math.exp(2) + 1)
    assert got[0].tolist() == pytest.approx([0.7 + 0.3 * p, 0.3 * (1 - p)], abs=1e-6)


def test_swapped_targets_by_hand():
    expected = _hand_targets(lambda i, j: _dot(A2[i], A2[j]) / TAU_S)  # a1·a2 = 0.6
    got = soft_targets("swapped", torch.tensor(V2), torch.tensor(A2), lam=LAM, tau_s=TAU_S, tau_t=TAU_T)
    _assert_matrix(got, expected)
    p = 1 / (1 + math.exp(-(1.0 - 0.6) / TAU_S))  # row 0: softmax(2, 1.2)
    assert got[0, 0].item() == pytest.approx(0.7 + 0.3 * p, abs=1e-6)


def test_cycle_targets_by_hand():
    s_kk = [_dot(V2[k], A2[k]) for k in range(2)]  # 0.8, 1.0
    expected = _hand_targets(lambda i, j: s_kk[i] / TAU_T + _dot(A2[i], V2[j]) / TAU_S + s_kk[j] / TAU_T)
    got = soft_targets("cycle", torch.tensor(V2), torch.tensor(A2), lam=LAM, tau_s=TAU_S, tau_t=TAU_T)
    _assert_matrix(got, expected)
    # row 0: scores 3.2+1.6+3.2 = 8.0 and 3.2+1.2+4.0 = 8.4
    p = 1 / (1 + math.exp(0.4))
    assert got[0].tolist() == pytest.approx([0.7 + 0.3 * p, 0.3 * (1 - p)], abs=1e-6)


def test_soft_targets_use_the_banks_when_given():
    v_bank = [[0.6, 0.8], [0.0, 1.0]]
    a_bank = [[1.0, 0.0], [0.0, 1.0]]
    got = soft_targets("bootstrap", torch.tensor(V2), torch.tensor(A2), v_bank=torch.tensor(v_bank), lam=LAM,
                       tau_s=TAU_S)
    _assert_matrix(got, _hand_targets(lambda i, j: _dot(V2[i], v_bank[j]) / TAU_S))
    s_kk = [_dot(v_bank[k], a_bank[k]) for k in range(2)]  # 0.6, 1.0
    got = soft_targets("cycle", torch.tensor(V2), torch.tensor(A2), v_bank=torch.tensor(v_bank),
                       a_bank=torch.tensor(a_bank), lam=LAM, tau_s=TAU_S, tau_t=TAU_T)
    _assert_matrix(got, _hand_targets(lambda i, j: s_kk[i] / TAU_T + _dot(A2[i], v_bank[j]) / TAU_S + s_kk[j] / TAU_T))


@pytest.mark.parametrize("kind", ["bootstrap", "swapped", "cycle"])
def test_soft_targets_rows_sum_to_one_without_gradient(kind):
    torch.manual_seed(1)
    v = F.normalize(torch.randn(5, 3), dim=1).requires_grad_()
    a = F.normalize(torch.randn(5, 3), dim=1).requires_grad_()
    t = soft_targets(kind, v, a)  # default τ_s = 0.02, τ_t = 0.07, λ = 0.5
    assert not t.requires_grad and t.grad_fn is None
    assert t.sum(1).tolist() == pytest.approx([1.0] * 5, abs=1e-5)
    assert (t >= 0).all() and (t.diagonal() >= 0.5 - 1e-6).all()


@pytest.mark.parametrize("kind", ["bootstrap", "swapped", "cycle"])
def test_lambda_zero_gives_identity_targets(kind):
    v = F.normalize(torch.randn(4, 3), dim=1)
    a = F.normalize(torch.randn(4, 3), dim=1)
    assert torch.equal(soft_targets(kind, v, a, lam=0.0), torch.eye(4))


def test_soft_target_pair_swaps_the_roles():
    fwd, bwd = soft_target_pair("bootstrap", torch.tensor(V2), torch.tensor(A2), lam=LAM, tau_s=TAU_S, tau_t=TAU_T)
    _assert_matrix(fwd, _hand_targets(lambda i, j: _dot(V2[i], V2[j]) / TAU_S))
    _assert_matrix(bwd, _hand_targets(lambda i, j: _dot(A2[i], A2[j]) / TAU_S))  # a→v bootstrap: audio neighbours
    _, bwd = soft_target_pair("cycle", torch.tensor(V2), torch.tensor(A2), lam=LAM, tau_s=TAU_S, tau_t=TAU_T)
    s_kk = [0.8, 1.0]
    _assert_matrix(bwd, _hand_targets(lambda i, j: s_kk[i] / TAU_T + _dot(V2[i], A2[j]) / TAU_S + s_kk[j] / TAU_T))


def test_soft_targets_reject_bad_arguments():
    v, a = torch.eye(2), torch.eye(2)
    with pytest.raises(ValueError):
        soft_targets("nearest", v, a)
    with pytest.raises(ValueError):
        soft_targets("bootstrap", v, a, lam=1.5)
    with pytest.raises(ValueError):
        soft_targets("bootstrap", v, a, v_bank=torch.eye(3))


def test_soft_target_xent_by_hand():
    logits = [[1.0, 0.0], [0.0, 2.0]]
    targets = [[0.75, 0.25], [0.5, 0.5]]
    # row 0: −0.75·log(e/(e+1)) − 0.25·log(1/(e+1)); row 1: −0.5·log(1/(1+e²)) − 0.5·log(e²/(1+e²))
    row0 = -0.75 * math.log(math.e / (math.e + 1)) - 0.25 * math.log(1 / (math.e + 1))
    row1 = -0.5 * math.log(1 / (1 + math.exp(2))) - 0.5 * math.log(math.exp(2) / (1 + math.exp(2)))
    assert soft_target_xent(torch.tensor(logits), torch.tensor(targets)).item() == pytest.approx((row0 + row1) / 2,
                                                                                                abs=1e-6)


# ---------------------------------------------------------------------------------------------- robust_xid_loss


def test_robust_xid_loss_reduces_to_infonce():
    torch.manual_seed(2)
    v = F.normalize(torch.randn(6, 5), dim=1)
    a = F.normalize(torch.randn(6, 5), dim=1)
    expected = infonce(v, a, 0.1).item()
    assert robust_xid_loss(v, a, 0.1).item() == pytest.approx(expected, abs=1e-6)
    assert robust_xid_loss(v, a, 0.1, targets=torch.eye(6)).item() == pytest.approx(expected, abs=1e-5)
    assert robust_xid_loss(v, a, 0.1, weights=torch.full((6,), 0.4)).item() == pytest.approx(expected, abs=1e-5)


def test_robust_xid_loss_with_weights_and_targets_by_hand():
    tau = 0.5
    logits = [[_dot(V2[i], A2[j]) / tau for j in range(2)] for i in range(2)]  # [[1.6, 0], [1.2, 2]]
    logits_t = [[logits[j][i] for j in range(2)] for i in range(2)]
    y_va = [[0.8, 0.2], [0.1, 0.9]]
    y_av = [[0.6, 0.4], [0.3, 0.7]]
    w = [0.25, 1.0]
    per_pair = [0.5 * (_soft_xent_row(logits[i], y_va[i]) + _soft_xent_row(logits_t[i], y_av[i])) for i in range(2)]
    expected = (w[0] * per_pair[0] + w[1] * per_pair[1]) / (w[0] + w[1])
    got = robust_xid_loss(torch.tensor(V2), torch.tensor(A2), tau, weights=torch.tensor(w),
                          targets=(torch.tensor(y_va), torch.tensor(y_av)))
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # no weights: the plain mean of the per-pair values
    got = robust_xid_loss(torch.tensor(V2), torch.tensor(A2), tau, targets=(torch.tensor(y_va), torch.tensor(y_av)))
    assert got.item() == pytest.approx(sum(per_pair) / 2, abs=1e-6)
    # a single matrix is used for both directions
    per_pair = [0.5 * (_soft_xent_row(logits[i], y_va[i]) + _soft_xent_row(logits_t[i], y_va[i])) for i in range(2)]
    got = robust_xid_loss(torch.tensor(V2), torch.tensor(A2), tau, targets=torch.tensor(y_va))
    assert got.item() == pytest.approx(sum(per_pair) / 2, abs=1e-6)


def test_robust_xid_loss_gradient_flows_to_features_only():
    torch.manual_seed(3)
    v = F.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    a = F.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    stats = AgreementStats()
    stats.update(pair_agreement(v, a))
    w = faulty_positive_weights(pair_agreement(v, a), stats.mu, stats.sigma)
    targets = soft_target_pair("cycle", v, a)
    loss = robust_xid_loss(v, a, 0.07, weights=w, targets=targets)
    loss.backward()
    assert v.grad is not None and a.grad is not None and torch.isfinite(loss)
    # the same loss with the targets built from detached copies gives the same gradient: targets are constants
    v2, a2 = v.detach().clone().requires_grad_(), a.detach().clone().requires_grad_()
    robust_xid_loss(v2, a2, 0.07, weights=w, targets=soft_target_pair("cycle", v.detach(), a.detach())).backward()
    assert torch.allclose(v.grad, v2.grad) and torch.allclose(a.grad, a2.grad)


def test_robust_xid_loss_rejects_bad_arguments():
    v = torch.eye(2)
    with pytest.raises(ValueError):
        robust_xid_loss(v, v, 0.1, weights=torch.ones(3))
    with pytest.raises(ValueError):
        robust_xid_loss(v, v, 0.1, targets=torch.eye(3))
    with pytest.raises(ValueError):
        robust_xid_loss(v, torch.eye(3), 0.1)


# ---------------------------------------------------------------------------------------------- bank negatives


def test_bank_soft_targets_by_hand():
    """Query v = e1, a = e2; candidates c0 (the positive), c1 with video rows e1, e2 and audio rows e2, e1."""
    from avcli.losses import bank_soft_targets

    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    v, a = e1[None], e2[None]
    v_cand, a_cand = torch.stack([e1, e2])[None], torch.stack([e2, e1])[None]
    boot = bank_soft_targets("bootstrap", v, a, v_cand, a_cand, lam=0.5, tau_s=0.5)
    s = torch.softmax(torch.tensor([1.0 / 0.5, 0.0]), 0)  # v·v̄_c / τ_s
    assert torch.allclose(boot, 0.5 * s[None] + torch.tensor([[0.5, 0.0]]))
    swapped = bank_soft_targets("swapped", v, a, v_cand, a_cand, lam=1.0, tau_s=0.5)
    assert torch.allclose(swapped, torch.softmax(torch.tensor([1.0 / 0.5, 0.0]), 0)[None])  # a·ā_c = 1, 0
    cycle = bank_soft_targets("cycle", v, a, v_cand, a_cand, lam=1.0, tau_s=0.5, tau_t=0.25)
    # s_cc = v̄_c·ā_c = 0 for both; a·v̄_c = 0, 1
    assert torch.allclose(cycle, torch.softmax(torch.tensor([0.0, 2.0]), 0)[None])
    assert torch.allclose(boot.sum(1), torch.ones(1))


def test_robust_bank_rows_by_hand():
    from avcli.losses import robust_bank_rows

    bank_v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    bank_a = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.8, 0.6]])
    v, a = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    index, negatives = torch.tensor([0]), torch.tensor([[1, 2]])
    tau = 0.5
    # v→a over audio rows of items 0, 1, 2: v·a_c = 0, 1, 0.8; a→v over video rows: a·v_c = 0, 1, 0.8
    logits = torch.tensor([0.0, 1.0, 0.8]) / tau
    one_hot = -torch.log_softmax(logits, 0)[0]
    got = robust_bank_rows(v, a, bank_v, bank_a, index, negatives, tau)
    assert torch.allclose(got, one_hot[None])
    y = torch.tensor([[0.5, 0.25, 0.25]])
    soft = -(y[0] * torch.log_softmax(logits, 0)).sum()
    assert torch.allclose(robust_bank_rows(v, a, bank_v, bank_a, index, negatives, tau, (y, y)), soft[None])
