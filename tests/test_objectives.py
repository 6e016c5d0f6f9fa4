"""Method objectives on hand-made batches (no decoding): losses equal the stated formulas, state follows the rules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avcli.losses import contrastive_with_extras, faulty_positive_weights, infonce
from avcli.recipe.schema import AVTS, XID, FaultyPositiveWeights, Movies, RobustXID, SoftTargets, Temporal
from avcli.train.objectives import TrainBatch
from avcli.train.objectives.avts import AVTSObjective, embedding_stats, sync_stats
from avcli.train.objectives.robust_xid import RobustXIDObjective
from avcli.train.objectives.temporal import TemporalObjective
from avcli.train.objectives.xid import MoviesObjective, XIDObjective


class TableModel(torch.nn.Module):
    """A stand-in model: a "clip" is a vector; the encoders are linear, the heads normalise."""

    def __init__(self, dim: int = 6, out: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.video, self.audio = torch.nn.Linear(dim, dim), torch.nn.Linear(dim, dim)
        self.video.out_dim = self.audio.out_dim = dim
        self.video_head, self.audio_head = torch.nn.Linear(dim, out), torch.nn.Linear(dim, out)

    def embed_video(self, x):
        return F.normalize(self.video_head(self.video(x)), dim=-1)

    def embed_audio(self, x):
        return F.normalize(self.audio_head(self.audio(x)), dim=-1)


def make_batch(b: int = 6, windows: int = 1, items=None, labels=None, dim: int = 6) -> TrainBatch:
    g = torch.Generator().manual_seed(1)
    return TrainBatch(
        video=torch.randn(b, windows, dim, generator=g), audio=torch.randn(b, windows, dim, generator=g),
        video_mask=torch.ones(b, windows, dtype=torch.bool), audio_mask=torch.ones(b, windows, dtype=torch.bool),
        items=torch.arange(b).repeat(windows, 1).t() if items is None else items, labels=labels or {},
    )


def test_xid_in_batch_is_symmetric_infonce():
    model, batch = TableModel(), make_batch()
    loss, stats = XIDObjective(XID(temperature=0.2), num_items=6, dim=4)(model, batch)
    v, a = model.embed_video(batch.video[:, 0]), model.embed_audio(batch.audio[:, 0])
    assert loss.item() == pytest.approx(infonce(v, a, 0.2).item(), abs=1e-6)
    assert 0.0 <= stats["xmodal_top1"] <= 1.0


def test_xid_memory_bank_updates_rows_by_the_momentum_rule_and_freezes_z():
    model, batch = TableModel(), make_batch(b=4, items=torch.tensor([[1], [3], [5], [7]]))
    cfg = XID(temperature=0.1, memory_bank={"negatives": 5, "momentum": 0.5, "loss": "nce"})
    objective = XIDObjective(cfg, num_items=10, dim=4)
    before = objective.banks.bank("audio").clone()
    loss, stats = objective(model, batch)
    assert torch.isfinite(loss) and objective.negatives == 5
    a = model.embed_audio(batch.audio[:, 0]).detach()
    expected = F.normalize(0.5 * before[[1, 3, 5, 7]] + 0.5 * a, dim=1)
    assert torch.allclose(objective.banks.bank("audio")[[1, 3, 5, 7]], expected, atol=1e-6)
    assert torch.equal(objective.banks.bank("audio")[[0, 2, 4]], before[[0, 2, 4]])  # untouched rows
    z = stats["partition_z"]
    objective(model, batch)
    assert float(objective.z.z) == pytest.approx(z)  # constant after the first batch
    state = objective.state_dict()  # what the checkpoint carries
    assert {"banks.bank_video", "banks.bank_audio", "z.z", "z.initialised"} <= set(state)


def test_memory_bank_negatives_are_capped_by_the_catalog():
    cfg = XID(memory_bank={"negatives": 1024})
    assert XIDObjective(cfg, num_items=30, dim=4).negatives == 29


def test_robust_xid_weights_follow_bank_agreement_after_start_epoch():
    cfg = RobustXID(temperature=0.1, weights=FaultyPositiveWeights(start_epoch=1, statistics="bank"), soft_targets=None)
    faulty = [False, True, False, True, False, False]
    objective = RobustXIDObjective(cfg, num_items=6, dim=4, faulty=faulty)
    model, batch = TableModel(), make_batch()
    objective.on_epoch_start(0)
    loss0, stats0 = objective(model, batch)
    assert "weight_mean" not in stats0  # epoch 0: plain xID
    v, a = model.embed_video(batch.video[:, 0]), model.embed_audio(batch.audio[:, 0])
    assert loss0.item() == pytest.approx(infonce(v, a, 0.1).item(), abs=1e-6)

    objective.on_epoch_start(1)  # μ, σ over the (now visited) bank rows
    s = (objective.banks.bank("video") * objective.banks.bank("audio")).sum(1)
    assert float(objective.mu) == pytest.approx(float(s.mean()), abs=1e-6)
    assert float(objective.sigma) == pytest.approx(float(s.std(unbiased=False)), abs=1e-6)
    _, stats1 = objective(model, batch)
    w = faulty_positive_weights(s, s.mean(), s.std(unbiased=False), 0.0, 0.5, 0.25)
    assert stats1["weight_mean"] == pytest.approx(float(w.mean()), abs=1e-5)
    mask = torch.tensor(faulty)
    assert stats1["weight_faulty"] == pytest.approx(float(w[mask].mean()), abs=1e-5)
    assert stats1["weight_clean"] == pytest.approx(float(w[~mask].mean()), abs=1e-5)
    final = objective.end_of_training_stats()
    assert set(final) == {"bank_weight_faulty", "bank_weight_clean", "bank_agreement_faulty", "bank_agreement_clean",
                          "bank_agreement_dprime"}


def test_robust_xid_known_faulty_trains_with_oracle_weights_and_reports_the_rule():
    cfg = RobustXID(temperature=0.1, soft_targets=None,
                    weights=FaultyPositiveWeights(start_epoch=1, w_min=0.25, source="known_faulty"))
    faulty = [False, True, False, True, False, False]
    objective = RobustXIDObjective(cfg, num_items=6, dim=4, faulty=faulty)
    model, batch = TableModel(), make_batch()
    objective.on_epoch_start(0)
    objective(model, batch)
    objective.on_epoch_start(1)
    s = (objective.banks.bank("video") * objective.banks.bank("audio")).sum(1)  # the agreement this step sees
    rule = faulty_positive_weights(s, s.mean(), s.std(unbiased=False), 0.0, 0.5, 0.25)
    loss, stats = objective(model, batch)
    v, a = model.embed_video(batch.video[:, 0]), model.embed_audio(batch.audio[:, 0])
    w = torch.tensor([1.0, 0.25, 1.0, 0.25, 1.0, 1.0])
    logits = v @ a.t() / 0.1
    rows = F.cross_entropy(logits, torch.arange(6), reduction="none")
    cols = F.cross_entropy(logits.t(), torch.arange(6), reduction="none")
    expected = (w * 0.5 * (rows + cols)).sum() / w.sum()  # Σ w_i·L_i / Σ w_i, L_i the mean of both directions
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert stats["weight_mean"] == pytest.approx(float(w.mean()))
    mask = torch.tensor(faulty)  # the per-kind figures are the rule's weights, not the oracle's 0.25 and 1
    assert stats["weight_faulty"] == pytest.approx(float(rule[mask].mean()), abs=1e-5)
    assert stats["weight_clean"] == pytest.approx(float(rule[~mask].mean()), abs=1e-5)


def test_robust_xid_end_of_training_reports_agreement_separation_by_hand():
    cfg = RobustXID(weights=FaultyPositiveWeights(start_epoch=0), soft_targets=None)
    objective = RobustXIDObjective(cfg, num_items=4, dim=2, faulty=[False, False, True, True])
    objective.banks.bank("video").copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))
    objective.banks.bank("audio").copy_(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]]))
    objective.visited.fill_(True)
    objective.on_epoch_start(1)  # μ, σ of the agreements 1.0, 0.8, 0.6, 0.0
    stats = objective.end_of_training_stats()
    sigma = math.sqrt(((1.0 - 0.6) ** 2 + (0.8 - 0.6) ** 2 + 0 + 0.6**2) / 4)
    assert stats["bank_agreement_clean"] == pytest.approx(0.9)
    assert stats["bank_agreement_faulty"] == pytest.approx(0.3)
    assert stats["bank_agreement_dprime"] == pytest.approx(0.6 / sigma)
    assert stats["bank_weight_faulty"] < stats["bank_weight_clean"]


def test_robust_xid_known_faulty_needs_a_catalog_that_knows():
    cfg = RobustXID(weights=FaultyPositiveWeights(source="known_faulty"))
    with pytest.raises(ValueError, match="weights.source=known_faulty"):
        RobustXIDObjective(cfg, num_items=6, dim=4, faulty=[False] * 6)


def test_robust_xid_soft_targets_leave_1_minus_lambda_plus_share_on_the_pair():
    cfg = RobustXID(weights=None, soft_targets=SoftTargets(estimator="bootstrap", lam=0.3, start_epoch=0))
    objective = RobustXIDObjective(cfg, num_items=6, dim=4)
    objective.on_epoch_start(0)
    _, stats = objective(TableModel(), make_batch())
    # y_ii = 0.7 + 0.3·S_ii with S a softmax row: between 0.7 and 1
    assert 0.7 <= stats["target_self"] <= 1.0


def test_avts_sync_stats_per_kind_by_hand():
    predicted = torch.tensor([True, True, False, False, True, False])
    positive = torch.tensor([True, False, False, True, False, False])
    kinds = ["none", "easy", "easy", "none", "hard", "hard"]
    stats = sync_stats(predicted, positive, kinds)
    assert stats["sync_accuracy"] == pytest.approx(3 / 6)
    assert stats["sync_accuracy_positive"] == pytest.approx(1 / 2)
    assert stats["sync_accuracy_easy"] == pytest.approx(1 / 2)
    assert stats["sync_accuracy_hard"] == pytest.approx(1 / 2)
    assert torch.isnan(stats["sync_accuracy_superhard"])  # none in this batch: left out of the log line
    from avcli.train.loop import read_stats

    assert "sync_accuracy_superhard" not in read_stats(stats) and read_stats(stats)["sync_accuracy"] == 0.5


def test_avts_embedding_stats_by_hand():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    stats = embedding_stats(v, a, ["none", "easy", "hard"])
    assert stats["distance_positive"] == pytest.approx(0.0)
    assert stats["distance_easy"] == pytest.approx(math.sqrt(2))
    assert stats["distance_hard"] == pytest.approx(math.sqrt(2))
    assert stats["mean_cosine_video"] == pytest.approx((0 + 1 + 0) / 3)  # pairs (0,1), (0,2), (1,2)
    assert stats["mean_cosine_audio"] == pytest.approx((1 + 0 + 0) / 3)
    collapsed = embedding_stats(torch.ones(4, 3) / math.sqrt(3), torch.ones(4, 3) / math.sqrt(3), ["none"] * 4)
    assert collapsed["mean_cosine_video"] == pytest.approx(1.0) and collapsed["mean_cosine_audio"] == pytest.approx(1.0)


@pytest.mark.parametrize("loss", ["margin", "fused"])
def test_avts_objective_trains_its_classifier_only_when_fused(loss):
    objective = AVTSObjective(AVTS(loss=loss, fused_hidden=8), dim=4)
    assert (len(list(objective.parameters())) > 0) == (loss == "fused")
    labels = {"sync": torch.tensor([1, 0, 1, 0]), "negative": ["none", "easy", "none", "hard"]}
    value, stats = objective(TableModel(), make_batch(b=4, labels=labels))
    value.backward()
    assert torch.isfinite(value) and "sync_accuracy_hard" in stats
    held = objective.held_out_stats(TableModel(), make_batch(b=4, labels=labels), chunk=3)
    assert set(held) >= {"heldout_sync_accuracy", "heldout_sync_accuracy_easy", "heldout_sync_accuracy_hard",
                         "heldout_sync_accuracy_calibrated", "heldout_sync_threshold",
                         "heldout_distance_positive", "heldout_distance_hard", "heldout_mean_cosine_audio"}


def test_avts_sync_bins_are_time_aligned_centred_and_trained():
    """sync_bins: K bins over the video clip's span from each tower's third stage (the audio cut to the part of
    its window the video covers), each bin through one shared head; centred, then L2-normalised."""
    from avcli.models import build_model
    from avcli.recipe.schema import Clip, Data, Model

    clip = Clip(frames=8, fps=8, size=32, resize=36, audio_seconds=2.0, sample_rate=16000)
    data = Data(catalog="unused", clip=clip, audio={"kind": "log_mel", "n_mels": 16}, sampler={"kind": "sync_pairs"})
    model = build_model(Model(video={"name": "tiny_r2plus1d", "width": 4}, audio={"name": "tiny_conv2d", "width": 4},
                              projector={"hidden_dim": 16, "out_dim": 8}))
    objective = AVTSObjective(AVTS(loss="margin", margin=2.0, sync_bins=4, center_embeddings=True), 8, model=model,
                              data=data)
    assert objective.audio_span == pytest.approx((0.25, 0.75))  # 1 s of video in the middle of 2 s of audio
    assert not objective.uses_every_parameter
    g = torch.Generator().manual_seed(0)
    labels = {"sync": torch.tensor([1, 0, 1, 0]), "negative": ["none", "easy", "none", "hard"]}
    batch = TrainBatch(video=torch.randn(4, 1, 3, 8, 32, 32, generator=g), audio=torch.randn(4, 1, 1, 201, 16, generator=g),
                       video_mask=torch.ones(4, 1, dtype=torch.bool), audio_mask=torch.ones(4, 1, dtype=torch.bool),
                       items=torch.tensor([[0, 0], [1, 2], [3, 3], [4, 4]]), labels=labels)
    v, a = objective.embed(model, batch)
    assert v.shape == a.shape == (4, 8)
    assert torch.allclose(v.norm(dim=1), torch.ones(4)) and torch.allclose(a.norm(dim=1), torch.ones(4))
    loss, stats = objective(model, batch)
    loss.backward()
    third_stage = [p for p in model.video.stages_[2].parameters()]
    assert all(p.grad is not None for p in third_stage) and objective.audio_bins[0].weight.grad is not None
    assert model.video_head.net[0].weight.grad is None  # the pooled heads are not part of this embedding
    held = objective.held_out_stats(model, batch, chunk=2)
    assert 0.0 <= held["heldout_sync_accuracy"] <= 1.0


def test_avts_sync_bins_go_through_the_towers_call_so_channels_last_and_compile_apply():
    """The stage maps come from `tower(x, upto=3)`: the channels_last pre-hook (and torch.compile, which wraps the
    module's call) see them; `.stages()` called directly bypassed both."""
    from avcli.models import build_model
    from avcli.recipe.schema import Clip, Data, Model
    from avcli.train.runtime import use_channels_last

    clip = Clip(frames=8, fps=8, size=32, resize=36, audio_seconds=2.0, sample_rate=16000)
    data = Data(catalog="unused", clip=clip, audio={"kind": "log_mel", "n_mels": 16}, sampler={"kind": "sync_pairs"})
    model = build_model(Model(video={"name": "tiny_r2plus1d", "width": 4}, audio={"name": "tiny_conv2d", "width": 4},
                              projector={"hidden_dim": 16, "out_dim": 8}))
    objective = AVTSObjective(AVTS(loss="margin", margin=2.0, sync_bins=4), 8, model=model, data=data)
    use_channels_last(model)
    layouts = []
    model.video.stem[0].register_forward_pre_hook(
        lambda m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last_3d)))
    model.audio.stem[0].register_forward_pre_hook(
        lambda m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    calls = []
    for tower in (model.video, model.audio):
        tower.register_forward_hook(lambda m, args, out: calls.append(type(out)))
    g = torch.Generator().manual_seed(0)
    batch = TrainBatch(video=torch.randn(2, 1, 3, 8, 32, 32, generator=g), audio=torch.randn(2, 1, 1, 201, 16, generator=g),
                       video_mask=torch.ones(2, 1, dtype=torch.bool), audio_mask=torch.ones(2, 1, dtype=torch.bool),
                       items=torch.tensor([[0, 0], [1, 1]]), labels={"sync": torch.tensor([1, 1]),
                                                                      "negative": ["none", "none"]})
    layouts.clear()
    objective.embed(model, batch)
    assert layouts == [True, True] and calls == [list, list]


def test_movies_same_title_errors_by_hand():
    objective = MoviesObjective(Movies(), titles=["a", "a", "b", "b"])

    class Fixed(torch.nn.Module):  # item 0's video matches item 1's audio best (same title), the rest right
        def embed_video(self, x):
            return x[:, :4]

        def embed_audio(self, x):
            return x[:, :4]

    eye = torch.eye(4)
    video = eye.clone()
    video[0] = F.normalize(torch.tensor([0.1, 1.0, 0.0, 0.0]), dim=0)
    batch = TrainBatch(video[:, None], eye[:, None], torch.ones(4, 1, dtype=torch.bool),
                       torch.ones(4, 1, dtype=torch.bool), torch.arange(4)[:, None], {})
    _, stats = objective(Fixed(), batch)
    assert stats["xmodal_top1"] == pytest.approx(0.75)
    assert stats["same_title_errors"] == pytest.approx(1.0)


def _temporal_batch(b=6):
    labels = {
        "speed_class": torch.tensor([0, 1, 2, 0, 1, 0]),
        "reverse": torch.tensor([0, 1, 0, 0, 0, 1]),
        "order": torch.tensor([1, 0, -1, 1, 0, 1]),
        "av_order": torch.tensor([0, 1, 1, -1, 0, 1]),
    }
    batch = make_batch(b=b, windows=3, labels=labels)
    batch.video = torch.randn(b, 3, 6, 2, 1, 1, generator=torch.Generator().manual_seed(2))  # B×W×C×T×H×W
    batch.video_mask[2, 1] = False  # the sampler could not place slot 1 of sample 2
    batch.audio_mask[2, 1] = False
    return batch


class _FramePool(torch.nn.Module):
    """A "video encoder" for C×T×1×1 clips that sees the frame order: mean over time plus first − last frame."""

    out_dim = 6

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(6, 6)

    def forward(self, x):
        return self.linear(x.mean(dim=(2, 3, 4)) + (x[:, :, 0] - x[:, :, -1]).flatten(1))


class ClipModel(TableModel):
    def __init__(self):
        super().__init__()
        self.video = _FramePool()


def test_temporal_objective_sums_weighted_terms_and_switches_them_off():
    batch = _temporal_batch()
    full = TemporalObjective(Temporal(extra_positives=0), (1, 2, 4), 6, 6, 4, num_items=6)
    loss, stats = full(ClipModel(), batch)
    terms = {k: v for k, v in stats.items() if k.startswith("loss_")}
    assert set(terms) == {"loss_speed", "loss_direction", "loss_order", "loss_av_order", "loss_video_audio",
                          "loss_video_video"}
    assert loss.item() == pytest.approx(sum(terms.values()), rel=1e-5)
    assert 0 <= stats["order_accuracy"] <= 1

    only_contrastive = TemporalObjective(Temporal(speed=0, direction=0, order=0, av_order=0, extra_positives=0),
                                         (1, 2, 4), 6, 6, 4, num_items=6)
    _, stats = only_contrastive(ClipModel(), batch)
    assert {k for k in stats if k.startswith("loss_")} == {"loss_video_audio", "loss_video_video"}
    assert "speed_accuracy" not in stats


def test_temporal_held_out_stats_score_every_trained_head_like_the_training_step():
    """On the same samples (a model without BatchNorm), the held-out accuracies equal the training step's batch
    figures; audio heads are scored too, and a head whose weight is 0 is not reported."""
    batch = _temporal_batch()
    objective = TemporalObjective(Temporal(extra_positives=0), (1, 2, 4), 6, 6, 4, num_items=6)
    model = ClipModel()
    _, stats = objective(model, batch)
    held = objective.held_out_stats(model, [batch.rows(slice(0, 4)), batch.rows(slice(4, 6))])
    assert set(held) == {"heldout_speed_accuracy", "heldout_speed_accuracy_audio", "heldout_direction_accuracy",
                         "heldout_direction_accuracy_audio", "heldout_order_accuracy",
                         "heldout_order_accuracy_audio", "heldout_av_order_accuracy"}
    for name in ("speed_accuracy", "direction_accuracy", "direction_accuracy_audio", "order_accuracy",
                 "av_order_accuracy"):
        assert held[f"heldout_{name}"] == pytest.approx(float(stats[name])), name
    no_direction = TemporalObjective(Temporal(direction=0, extra_positives=0), (1, 2, 4), 6, 6, 4, num_items=6)
    assert not any("direction" in k for k in no_direction.held_out_stats(model, [batch]))


def test_temporal_empty_windows_never_reach_the_towers():
    """A window the sampler could not place is zeros in the batch; it must not be encoded (a wasted forward pass
    and blank inputs in the BatchNorm statistics). Every term still equals its value over the present windows."""
    batch = _temporal_batch()
    batch.video_mask[3, 2] = False  # and the inter-modal pair of sample 3
    batch.audio_mask[3, 2] = False
    model = ClipModel()
    rows_seen = {}
    for name in ("video", "audio", "video_head", "audio_head"):
        getattr(model, name).register_forward_hook(
            lambda module, args, out, name=name: rows_seen.setdefault(name, []).append(args[0].shape[0]))
    objective = TemporalObjective(Temporal(extra_positives=0, extra_negatives=False), (1, 2, 4), 6, 6, 4,
                                  num_items=6)
    objective(model, batch)
    assert rows_seen["video"] == [16] and rows_seen["audio"] == [16]  # 18 windows, 2 empty
    assert rows_seen["video_head"] == [16] and rows_seen["audio_head"] == [16]


def _natural_anchor_negatives(model, batch, ev, rows):
    """By hand, for `_temporal_batch`: the slot-1 clip reversed (always) and the slot-0 video where it is
    transformed (speed ≠ 1 or reversed), with their mask."""
    backwards = model.embed_video(batch.video[rows, 1].flip(2))
    transformed = torch.tensor([False, True, True, False, True, True])[rows]
    extra = torch.stack([backwards, ev[rows, 0]], dim=1)
    return extra, torch.stack([torch.ones_like(transformed), transformed], dim=1)


def test_temporal_contrastive_uses_masked_extra_negatives_and_queue_positives():
    batch = _temporal_batch()
    model = ClipModel()
    objective = TemporalObjective(Temporal(speed=0, direction=0, order=0, av_order=0, video_audio=0,
                                           extra_positives=2, queue_size=8, extra_positives_start_epoch=0),
                                  (1, 2, 4), 6, 6, 4, num_items=6)
    loss, _ = objective(model, batch)
    # by hand: rows with slot 1 and slot 2 present; anchor = slot-1 video, positive = slot-2 video; extra
    # negatives = slot-1 video reversed (always) and slot-0 video where it is transformed (speed ≠ 1 or reversed)
    rows = torch.tensor([True, True, False, True, True, True])
    ev = model.embed_video(batch.video.flatten(0, 1)).view(6, 3, -1)
    extra, mask = _natural_anchor_negatives(model, batch, ev, rows)
    expected = contrastive_with_extras(ev[rows, 1], ev[rows, 2], 0.1, extra, None, mask)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)  # queue empty: no extra positives yet
    assert int(objective.queue.filled) == 5  # the 5 anchors were pushed
    loss2, _ = objective(model, batch)
    assert not math.isclose(loss2.item(), loss.item())  # now 2 queue neighbours join the positives


def test_temporal_queue_negatives_join_the_extra_negatives():
    """queue_negatives: K past embeddings per anchor from the feature queue, as extra negatives. With every queue
    row the same vector q, the draw is known: the loss is the one with [reversed, transformed main, q, q]."""
    batch = _temporal_batch()
    model = ClipModel()
    objective = TemporalObjective(Temporal(speed=0, direction=0, order=0, av_order=0, video_audio=0,
                                           extra_positives=0, queue_negatives=2, queue_size=8,
                                           extra_positives_start_epoch=0), (1, 2, 4), 6, 6, 4, num_items=6)
    q = F.normalize(torch.tensor([1.0, -1.0, 0.5, 0.0]), dim=0)
    objective.queue.push(q.repeat(8, 1))
    loss, _ = objective(model, batch)
    rows = torch.tensor([True, True, False, True, True, True])
    ev = model.embed_video(batch.video.flatten(0, 1)).view(6, 3, -1)
    extra, mask = _natural_anchor_negatives(model, batch, ev, rows)
    extra = torch.cat([extra, q.repeat(5, 2, 1)], dim=1)
    mask = torch.cat([mask, torch.ones(5, 2, dtype=torch.bool)], dim=1)
    expected = contrastive_with_extras(ev[rows, 1], ev[rows, 2], 0.1, extra, None, mask)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_temporal_extra_positives_wait_for_their_start_epoch_while_the_queue_fills():
    batch = _temporal_batch()
    model = ClipModel()
    cfg = Temporal(speed=0, direction=0, order=0, av_order=0, video_audio=0, extra_positives=2, queue_size=8,
                   extra_positives_start_epoch=2)
    objective = TemporalObjective(cfg, (1, 2, 4), 6, 6, 4, num_items=6)
    plain = TemporalObjective(cfg.model_copy(update={"extra_positives": 0}), (1, 2, 4), 6, 6, 4, num_items=6)
    for epoch in (0, 1):
        objective.on_epoch_start(epoch)
        loss, _ = objective(model, batch)
        assert loss.item() == pytest.approx(plain(model, batch)[0].item(), rel=1e-6)  # no queue neighbours yet
    assert int(objective.queue.filled) == 8  # but the queue kept filling (2 × 5 anchors, 8 kept)
    objective.on_epoch_start(2)
    assert objective(model, batch)[0].item() != pytest.approx(loss.item(), rel=1e-3)  # now they join
    assert int(objective.state_dict()["epoch"]) == 2  # checkpointed: a resumed run keeps its epoch


def _video_audio_only(video_audio_clip: str):
    """The temporal objective with only its video–audio term, applied to `_temporal_batch`: (batch, model, its
    (loss, stats), and every window's video and audio embedding, B×3×D each)."""
    batch, model = _temporal_batch(), ClipModel()
    objective = TemporalObjective(Temporal(speed=0, direction=0, order=0, av_order=0, video_video=0,
                                           extra_positives=0, video_audio_clip=video_audio_clip),
                                  (1, 2, 4), 6, 6, 4, num_items=6)
    ev = model.embed_video(batch.video.flatten(0, 1)).view(6, 3, -1)
    ea = model.embed_audio(batch.audio.flatten(0, 1)).view(6, 3, -1)
    return batch, model, objective(model, batch), ev, ea


def test_temporal_natural_video_audio_pair_uses_the_second_clip_and_the_transformed_main_as_negative():
    batch, model, (loss, stats), ev, ea = _video_audio_only("natural")
    # by hand: the pair is slot 1 (speed 1, forward) where the sampler placed it (not sample 2); the audio →
    # video direction also scores slot 1 reversed and, where slot 0 is transformed, slot 0's video
    rows = torch.tensor([True, True, False, True, True, True])
    extra, mask = _natural_anchor_negatives(model, batch, ev, rows)
    a_to_v = contrastive_with_extras(ea[rows, 1], ev[rows, 1], 0.1, extra, None, mask)
    v_to_a = contrastive_with_extras(ev[rows, 1], ea[rows, 1], 0.1)
    assert loss.item() == pytest.approx(0.5 * (a_to_v + v_to_a).item(), rel=1e-5)
    assert set(k for k in stats if k.startswith("loss_")) == {"loss_video_audio"}


def test_temporal_both_video_audio_pairs_make_the_two_clips_of_a_video_each_others_negatives():
    batch, model, (loss, stats), ev, ea = _video_audio_only("both")
    # by hand: 6 main pairs then the 5 natural ones (sample 2 has no slot 1), one 11×11 InfoNCE in which a
    # video's main and natural clips are negatives of each other; audio → video also scores each clip reversed
    rows = torch.tensor([True, True, False, True, True, True])
    anchor_v, anchor_a = torch.cat([ev[:, 0], ev[rows, 1]]), torch.cat([ea[:, 0], ea[rows, 1]])
    clips = torch.cat([batch.video[:, 0], batch.video[rows, 1]])
    backwards = model.embed_video(clips.flip(2))[:, None]
    a_to_v = contrastive_with_extras(anchor_a, anchor_v, 0.1, backwards)
    v_to_a = contrastive_with_extras(anchor_v, anchor_a, 0.1)
    assert loss.item() == pytest.approx(0.5 * (a_to_v + v_to_a).item(), rel=1e-5)
    assert stats["xmodal_top1"] == pytest.approx(
        float(((anchor_v @ anchor_a.t()).argmax(1) == torch.arange(11)).float().mean()))


def test_avts_batch_negatives_add_the_margin_loss_of_every_cross_item_pairing():
    from avcli.losses import avts_margin_loss

    labels = {"sync": torch.tensor([1, 0, 1]), "negative": ["none", "hard", "none"]}
    items = torch.tensor([[0, 0], [1, 1], [2, 5]])  # (video item, audio item) per sample
    batch = make_batch(b=3, windows=1, items=items, labels=labels)
    model = TableModel()
    base = AVTSObjective(AVTS(loss="margin", margin=0.99), dim=4)
    extended = AVTSObjective(AVTS(loss="margin", margin=0.99, batch_negatives=True), dim=4)
    plain, _ = base(model, batch)
    total, stats = extended(model, batch)
    v, a = model.embed_video(batch.video[:, 0]), model.embed_audio(batch.audio[:, 0])
    # pairings (i, j) with video item i ≠ audio item j: all but (0, 0) and (1, 1) → 7 of 9
    vi = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    aj = torch.tensor([1, 2, 0, 2, 0, 1, 2])
    expected = avts_margin_loss(v[vi], a[aj], torch.zeros(7, dtype=torch.bool), 0.99)
    assert stats["loss_batch_negatives"] == pytest.approx(expected.item(), abs=1e-6)
    assert total.item() == pytest.approx(plain.item() + expected.item(), abs=1e-6)
