"""AVID memory bank and its losses (METHODS.md §1) against values computed by hand."""

from __future__ import annotations

import io
import math

import pytest
import torch

from avcli.losses.memory_bank import (
    MemoryBank,
    PartitionEstimate,
    cross_modal_bank_loss,
    nce_constant_z_loss,
    sample_negatives,
    softmax_bank_loss,
)


def _nce_row(pos: float, negs: list[float], kz: float) -> float:
    """One row of the constant-Z NCE loss, straight from the formula."""
    loss = -math.log(math.exp(pos) / (math.exp(pos) + kz))
    for s in negs:
        loss -= math.log(kz / (math.exp(s) + kz))
    return loss


def _softmax_row(pos: float, negs: list[float]) -> float:
    return -math.log(math.exp(pos) / (math.exp(pos) + sum(math.exp(s) for s in negs)))


# --- the bank -------------------------------------------------------------------------------------------------


def test_bank_rows_are_unit_norm_sized_by_the_catalog_and_reproducible_from_the_seed():
    bank = MemoryBank(7, 3, seed=5)
    assert bank.bank("video").shape == (7, 3) and bank.bank("audio").shape == (7, 3)
    assert MemoryBank(11, 3).bank("audio").shape == (11, 3)
    for name in ("video", "audio"):
        norms = bank.bank(name).norm(dim=1)
        assert torch.allclose(norms, torch.ones(7), atol=1e-6)
    again = MemoryBank(7, 3, seed=5)
    assert torch.equal(bank.bank_video, again.bank_video) and torch.equal(bank.bank_audio, again.bank_audio)
    explicit = MemoryBank(7, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(bank.bank_video, explicit.bank_video)
    other = MemoryBank(7, 3, seed=6)
    assert not torch.equal(bank.bank_video, other.bank_video)
    assert not torch.equal(bank.bank_video, bank.bank_audio)  # the two banks are distinct draws


def test_bank_buffers_are_in_the_state_dict_and_round_trip():
    bank = MemoryBank(5, 4, seed=1)
    bank.update(torch.tensor([2]), {"video": torch.tensor([[1.0, 0.0, 0.0, 0.0]])})
    state = bank.state_dict()
    assert set(state) == {"bank_video", "bank_audio"}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = MemoryBank(5, 4, seed=99)
    restored.load_state_dict(torch.load(buffer))
    assert torch.equal(restored.bank_video, bank.bank_video)
    assert torch.equal(restored.bank_audio, bank.bank_audio)


def test_sampled_negatives_exclude_self_stay_in_range_and_are_uniform():
    gen = torch.Generator().manual_seed(0)
    index = torch.tensor([0, 1, 2, 2])
    neg = sample_negatives(index, 3, 3000, gen)
    assert neg.shape == (4, 3000) and neg.dtype == torch.long
    assert int(neg.min()) >= 0 and int(neg.max()) <= 2
    assert not bool((neg == index.unsqueeze(1)).any())
    for row, own in enumerate(index.tolist()):
        for other in {0, 1, 2} - {own}:
            frac = float((neg[row] == other).float().mean())
            assert 0.45 < frac < 0.55  # each of the two allowed items ~1/2 (5σ band)
    # the bank method draws the same way, and a seed reproduces the draw
    bank = MemoryBank(3, 2)
    a = bank.sample_negatives(index, 50, torch.Generator().manual_seed(4))
    b = sample_negatives(index, 3, 50, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    # N = 2: the only allowed negative is the other item
    assert torch.equal(sample_negatives(torch.tensor([0, 1]), 2, 5, gen), torch.tensor([[1] * 5, [0] * 5]))
    with pytest.raises(ValueError):
        sample_negatives(torch.tensor([3]), 3, 4, gen)


def test_momentum_update_matches_the_formula_and_averages_duplicates():
    bank = MemoryBank(3, 2)
    bank.bank_video.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    before_audio = bank.bank_audio.clone()
    # row 0: 0.5·(1,0) + 0.5·(0,1) = (0.5, 0.5) → (1/√2, 1/√2)
    # row 1 twice, features (0,1) and (1,0): mean (0.5,0.5); 0.5·(1,0) + 0.5·(0.5,0.5) = (0.75, 0.25) → /√0.625
    bank.update(
        torch.tensor([0, 1, 1]),
        {"video": torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])},
        momentum=0.5,
    )
    r = 1 / math.sqrt(2)
    n = math.sqrt(0.75**2 + 0.25**2)
    expected = torch.tensor([[r, r], [0.75 / n, 0.25 / n], [0.0, 1.0]])
    assert torch.allclose(bank.bank_video, expected, atol=1e-6)
    assert torch.equal(bank.bank_audio, before_audio)  # only the modalities given are updated


# --- the losses -----------------------------------------------------------------------------------------------


def test_nce_constant_z_matches_hand_computation():
    pos = torch.tensor([1.0, 0.0])
    neg = torch.tensor([[0.5, -0.5], [1.0, 0.0]])
    # K = 2, Z = 2 → K·Z = 4
    row0 = (-math.log(math.e / (math.e + 4)) - math.log(4 / (math.exp(0.5) + 4))
            - math.log(4 / (math.exp(-0.5) + 4)))
    row1 = (-math.log(1 / (1 + 4)) - math.log(4 / (math.e + 4)) - math.log(4 / (1 + 4)))
    assert nce_constant_z_loss(pos, neg, 2.0, 2).item() == pytest.approx((row0 + row1) / 2, abs=1e-6)
    assert nce_constant_z_loss(pos.unsqueeze(1), neg, torch.tensor(2.0)).item() == pytest.approx(
        (row0 + row1) / 2, abs=1e-6
    )
    # an explicit k is the noise ratio in K·Z: k = 4, Z = 1 gives the same K·Z
    assert nce_constant_z_loss(pos, neg, 1.0, 4).item() == pytest.approx((row0 + row1) / 2, abs=1e-6)


def test_softmax_bank_loss_matches_hand_computation():
    pos = torch.tensor([1.0, 0.0])
    neg = torch.tensor([[0.5, -0.5], [1.0, 0.0]])
    row0 = -math.log(math.e / (math.e + math.exp(0.5) + math.exp(-0.5)))
    row1 = -math.log(1 / (1 + math.e + 1))
    assert softmax_bank_loss(pos, neg).item() == pytest.approx((row0 + row1) / 2, abs=1e-6)


def test_partition_estimate_is_set_by_the_first_batch_then_frozen_and_checkpointed():
    z = PartitionEstimate()
    assert not bool(z.initialised)
    first = torch.tensor([[0.0, math.log(3.0)]])  # exp → 1, 3; mean 2
    assert z(first).item() == pytest.approx(2.0)
    assert bool(z.initialised)
    assert z(torch.tensor([[5.0, 5.0]])).item() == pytest.approx(2.0)  # frozen
    # the loss uses the frozen Z: K = 2, K·Z = 4
    loss = nce_constant_z_loss(torch.tensor([1.0]), torch.tensor([[0.5, -0.5]]), z)
    assert loss.item() == pytest.approx(_nce_row(1.0, [0.5, -0.5], 4.0), abs=1e-6)
    state = z.state_dict()
    assert set(state) == {"z", "initialised"}
    restored = PartitionEstimate()
    restored.load_state_dict(state)
    assert bool(restored.initialised) and restored.z.item() == pytest.approx(2.0)
    assert restored(torch.tensor([[9.0]])).item() == pytest.approx(2.0)


def test_partition_estimate_on_first_use_feeds_the_loss_of_that_batch():
    pos = torch.tensor([0.2])
    neg = torch.tensor([[0.0, math.log(3.0)]])  # Z = 2, K·Z = 4
    loss = nce_constant_z_loss(pos, neg, PartitionEstimate())
    assert loss.item() == pytest.approx(_nce_row(0.2, [0.0, math.log(3.0)], 4.0), abs=1e-6)


# --- cross-modal loss against the banks ---------------------------------------------------------------------


def _two_item_setup():
    # N = 2: each row's K negatives are all the other item, so the scores are fixed.
    bank_v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bank_a = torch.tensor([[0.6, 0.8], [0.8, -0.6]])
    v = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    a = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    return v, a, torch.tensor([0, 1]), bank_v, bank_a


def test_cross_modal_softmax_matches_hand_computation():
    v, a, index, bank_v, bank_a = _two_item_setup()
    # τ = 0.5. v→a: row 0 pos 0.6/τ = 1.2, negs 0.8/τ = 1.6 (×2); row 1 pos 0, negs 1/τ = 2 (×2).
    # a→v: row 0 pos 0, negs 2 (×2); row 1 pos 0, negs 2 (×2).
    v_to_a = (_softmax_row(1.2, [1.6, 1.6]) + _softmax_row(0.0, [2.0, 2.0])) / 2
    a_to_v = (_softmax_row(0.0, [2.0, 2.0]) + _softmax_row(0.0, [2.0, 2.0])) / 2
    loss = cross_modal_bank_loss(v, a, index, bank_v, bank_a, k=2, temperature=0.5,
                                 generator=torch.Generator().manual_seed(0), form="softmax")
    assert loss.item() == pytest.approx((v_to_a + a_to_v) / 2, abs=1e-5)


def test_cross_modal_nce_matches_hand_computation_with_shared_and_separate_z():
    v, a, index, bank_v, bank_a = _two_item_setup()
    gen = torch.Generator().manual_seed(0)
    # shared estimate, initialised by the v→a negatives: Z = (2e^1.6 + 2e^2)/4, K·Z = e^1.6 + e^2
    kz = math.exp(1.6) + math.exp(2.0)
    v_to_a = (_nce_row(1.2, [1.6, 1.6], kz) + _nce_row(0.0, [2.0, 2.0], kz)) / 2
    a_to_v = (_nce_row(0.0, [2.0, 2.0], kz) + _nce_row(0.0, [2.0, 2.0], kz)) / 2
    z = PartitionEstimate()
    loss = cross_modal_bank_loss(v, a, index, bank_v, bank_a, 2, 0.5, gen, form="nce", z_v=z)
    assert loss.item() == pytest.approx((v_to_a + a_to_v) / 2, abs=1e-5)
    assert z.z.item() == pytest.approx(kz / 2, rel=1e-6)
    # separate constants: Z_v = 1 (K·Z = 2) for v→a, Z_a = 3 (K·Z = 6) for a→v
    v_to_a = (_nce_row(1.2, [1.6, 1.6], 2.0) + _nce_row(0.0, [2.0, 2.0], 2.0)) / 2
    a_to_v = (_nce_row(0.0, [2.0, 2.0], 6.0) + _nce_row(0.0, [2.0, 2.0], 6.0)) / 2
    loss = cross_modal_bank_loss(v, a, index, bank_v, bank_a, 2, 0.5, gen, z_v=1.0, z_a=3.0)
    assert loss.item() == pytest.approx((v_to_a + a_to_v) / 2, abs=1e-5)
    with pytest.raises(ValueError):
        cross_modal_bank_loss(v, a, index, bank_v, bank_a, 2, 0.5, gen, form="nce")


def test_cross_modal_loss_with_sampled_negatives_matches_a_hand_loop():
    torch.manual_seed(0)
    bank = MemoryBank(6, 3, seed=2)
    v = torch.nn.functional.normalize(torch.randn(3, 3), dim=1)
    a = torch.nn.functional.normalize(torch.randn(3, 3), dim=1)
    index = torch.tensor([4, 0, 4])
    k, tau = 5, 0.2
    negatives = sample_negatives(index, 6, k, torch.Generator().manual_seed(11)).tolist()
    bv, ba = bank.bank_video.tolist(), bank.bank_audio.tolist()

    def dot(x, y):
        return sum(p * q for p, q in zip(x, y))

    total = {"softmax": 0.0, "nce": 0.0}
    for query, bank_rows in ((v.tolist(), ba), (a.tolist(), bv)):
        for b, i in enumerate(index.tolist()):
            pos = dot(query[b], bank_rows[i]) / tau
            negs = [dot(query[b], bank_rows[j]) / tau for j in negatives[b]]
            total["softmax"] += _softmax_row(pos, negs) / (2 * 3)
            total["nce"] += _nce_row(pos, negs, k * 1.5) / (2 * 3)
    for form in ("softmax", "nce"):
        loss = cross_modal_bank_loss(v, a, index, bank.bank_video, bank.bank_audio, k, tau,
                                     torch.Generator().manual_seed(11), form=form, z_v=1.5)
        assert loss.item() == pytest.approx(total[form], abs=1e-4)


def test_gradient_reaches_the_embeddings_but_not_the_banks_and_banks_are_not_updated():
    bank = MemoryBank(8, 4, seed=0)
    before_v, before_a = bank.bank_video.clone(), bank.bank_audio.clone()
    v = torch.nn.functional.normalize(torch.randn(3, 4), dim=1).requires_grad_()
    a = torch.nn.functional.normalize(torch.randn(3, 4), dim=1).requires_grad_()
    # even a bank tensor that asks for gradient gets none (the loss detaches it)
    bank_a = bank.bank_audio.clone().requires_grad_()
    for form in ("nce", "softmax"):
        v.grad = a.grad = None
        loss = cross_modal_bank_loss(v, a, torch.tensor([1, 5, 7]), bank.bank_video, bank_a, 16, 0.07,
                                     torch.Generator().manual_seed(1), form=form, z_v=PartitionEstimate())
        loss.backward()
        assert v.grad is not None and float(v.grad.abs().sum()) > 0
        assert a.grad is not None and float(a.grad.abs().sum()) > 0
        assert bank_a.grad is None
        assert not bank.bank_video.requires_grad and bank.bank_video.grad is None
    assert torch.equal(bank.bank_video, before_v) and torch.equal(bank.bank_audio, before_a)
    # the caller updates after scoring; the updated rows stay unit norm
    bank.update(torch.tensor([1, 5, 7]), {"video": v.detach(), "audio": a.detach()})
    assert torch.allclose(bank.bank_video.norm(dim=1), torch.ones(8), atol=1e-6)
    assert not torch.equal(bank.bank_video[1], before_v[1]) and torch.equal(bank.bank_video[0], before_v[0])
