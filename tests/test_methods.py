"""Every `method.kind` trains end to end on the small synthetic world, logs its health metrics, checkpoints its
state (banks, queues, heads) and resumes with the same losses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avcli.errors import Interrupted
from avcli.recipe import recipe_from_dict
from avcli.train.checkpoint import load_train_state, resolve_checkpoint
from avcli.train.loop import pretrain
from avcli.train.metrics import read_metrics

from conftest import tiny_recipe_dict

METHODS = {
    "xid_bank": ({"kind": "xid", "temperature": 0.1, "memory_bank": {"negatives": 8}}, {"kind": "uniform"}),
    "robust_xid": (
        {"kind": "robust_xid", "temperature": 0.1, "weights": {"start_epoch": 1}, "soft_targets": {"start_epoch": 1}},
        {"kind": "uniform"},
    ),
    # AVID's memory-bank form: each query against its bank row and 8 bank negatives, soft targets over them
    "robust_xid_bank": (
        {"kind": "robust_xid", "temperature": 0.1, "bank_negatives": 8, "weights": {"start_epoch": 1},
         "soft_targets": {"start_epoch": 1, "estimator": "cycle"}},
        {"kind": "uniform"},
    ),
    # the oracle: the world's known faulty pairs weighted w_min, the others 1
    "robust_xid_known_faulty": (
        {"kind": "robust_xid", "weights": {"start_epoch": 1, "source": "known_faulty"}, "soft_targets": None},
        {"kind": "uniform"},
    ),
    "avts": ({"kind": "avts", "loss": "fused", "held_out_pairs": 12, "held_out_every": 3},
             {"kind": "sync_pairs", "switch_epoch": 1, "min_gap_s": 0.2}),
    "temporal": ({"kind": "temporal", "extra_positives": 2, "queue_size": 16},
                 {"kind": "temporal", "speeds": [1, 2], "min_gap_s": 0.0}),
    "movies": ({"kind": "movies", "temperature": 0.1}, {"kind": "hierarchical", "clips_per_title": 2}),
    # both video–audio pairs per sample, the sound sped up by its tempo (phase vocoder)
    "temporal_both_tempo": ({"kind": "temporal", "extra_positives": 2, "queue_size": 16, "video_audio_clip": "both"},
                            {"kind": "temporal", "speeds": [1, 2], "min_gap_s": 0.0, "audio_speed": "tempo"}),
}
HEALTH = {
    "xid_bank": {"partition_z", "xmodal_top1"},
    "robust_xid": {"weight_mean", "weight_faulty", "weight_clean", "target_self"},
    "robust_xid_bank": {"weight_mean", "weight_faulty", "weight_clean", "target_self"},
    "robust_xid_known_faulty": {"weight_mean", "weight_faulty", "weight_clean", "bank_agreement_dprime"},
    "avts": {"sync_accuracy", "heldout_sync_accuracy", "heldout_sync_accuracy_hard", "heldout_sync_accuracy_easy"},
    "temporal": {"speed_accuracy", "direction_accuracy", "order_accuracy", "av_order_accuracy", "loss_video_video"},
    "movies": {"same_title_errors", "xmodal_top1"},
    "temporal_both_tempo": {"speed_accuracy", "direction_accuracy", "loss_video_audio", "xmodal_top1"},
}
STATE = {
    "xid_bank": {"banks.bank_video", "z.z"},
    "robust_xid": {"banks.bank_audio", "visited", "mu", "sigma"},
    "robust_xid_bank": {"banks.bank_audio", "visited", "mu", "sigma", "_extra_state"},
    "robust_xid_known_faulty": {"banks.bank_audio", "visited", "mu", "sigma"},
    "avts": {"classifier.net.0.weight"},
    "temporal": {"queue.features", "video_heads.speed.weight", "av_order.0.weight"},
    "movies": set(),
    "temporal_both_tempo": {"queue.features"},
}


def _recipe(world, run_dir, name, steps=6, **training):
    method, sampler = METHODS[name]
    tree = tiny_recipe_dict(world, run_dir, steps=steps, **training)
    tree["method"], tree["data"]["sampler"] = method, sampler
    if name.startswith("temporal"):
        tree["data"]["clip"]["audio_seconds"] = 0.5  # two disjoint clips fit the 3–4 s videos at speed 2
    return recipe_from_dict(tree)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_trains_logs_health_and_checkpoints_its_state(small_world, tmp_path, name):
    summary = pretrain(_recipe(small_world, tmp_path / "run", name))
    assert summary["steps"] == 6 and torch.isfinite(torch.tensor(summary["final_loss"]))
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    logged = set().union(*metrics)
    assert HEALTH[name] <= logged, HEALTH[name] - logged
    state = load_train_state(resolve_checkpoint(tmp_path / "run"))
    assert STATE[name] <= set(state["objective"]), STATE[name] - set(state["objective"])


def test_robust_xid_reports_bank_weights_of_faulty_and_clean_pairs_at_the_end(small_world, tmp_path):
    pretrain(_recipe(small_world, tmp_path / "run", "robust_xid"))
    last = read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]
    assert 0.25 <= last["bank_weight_faulty"] <= 1.0 and 0.25 <= last["bank_weight_clean"] <= 1.0
    assert -1.0 <= last["bank_agreement_faulty"] <= 1.0 and -1.0 <= last["bank_agreement_clean"] <= 1.0
    assert "bank_agreement_dprime" in last


class _StopAfter:
    def __init__(self, steps):
        self.steps, self.calls = steps, 0

    def __enter__(self):
        outer = self

        class Flag:
            @property
            def requested(self):
                outer.calls += 1
                return "SIGTERM" if outer.calls == outer.steps else None

        return Flag()

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("name", ["xid_bank", "robust_xid", "robust_xid_bank", "temporal"])
def test_resume_keeps_the_objective_state(small_world, tmp_path, monkeypatch, name):
    """Banks, Z, agreement statistics and queues come back from the checkpoint: same losses as a straight run."""
    import avcli.train.loop as loop

    straight = _recipe(small_world, tmp_path / "straight", name, steps=6, checkpoint_every=3)
    pretrain(straight)
    resumed = _recipe(small_world, tmp_path / "resumed", name, steps=6, checkpoint_every=3)
    monkeypatch.setattr(loop, "_stop_requests", lambda: _StopAfter(4))  # mid epoch 1 (3 steps per epoch)
    with pytest.raises(Interrupted):
        pretrain(resumed)
    monkeypatch.undo()
    pretrain(resumed, resume="auto")
    expected = [m["loss"] for m in read_metrics(tmp_path / "straight" / "metrics.jsonl")]
    got = [m["loss"] for m in read_metrics(tmp_path / "resumed" / "metrics.jsonl")]
    assert len(got) == 6
    assert got == pytest.approx(expected, abs=1e-5)


def test_knn_accuracy_leave_one_out_by_hand():
    from avcli.train.health import knn_accuracy

    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.8, 0.2]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    # k=1: 0→1 (0 ✓), 1→0 (0 ✓), 2→3 (1 ✓), 3→2 (1 ✓), 4→1 (0 ✗, its nearest is row 1)
    assert knn_accuracy(features, labels, k=1) == pytest.approx(4 / 5)


def test_online_knn_health_metric_is_logged(small_world, tmp_path):
    recipe = recipe_from_dict({**tiny_recipe_dict(small_world, tmp_path / "run", steps=4, log_every=2,
                                                  knn={"every": 2, "items": 12, "k": 3})})
    pretrain(recipe)
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [("knn_video" in m, "knn_audio" in m) for m in metrics] == [(True, True), (True, True)]
    assert all(0.0 <= m["knn_video"] <= 1.0 for m in metrics)


TINY = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "recipes").glob("*-tiny.yaml"))


@pytest.mark.parametrize("name", TINY)
def test_every_tiny_recipe_trains_two_steps(small_world, tmp_path, name):
    """The shipped CPU recipes as they are, pointed at the small world with a batch it can fill."""
    from avcli.recipe import load_recipe

    path = Path(__file__).resolve().parents[1] / "recipes" / name
    overrides = [f"data.catalog={small_world}", "training.steps=2", "training.batch_size=8", "training.workers=0",
                 f"output.run_dir={tmp_path / 'run'}", "data.clips_per_item=1"]
    if "avts" in name:
        overrides.append("method.held_out_pairs=8")
    summary = pretrain(load_recipe(path, overrides))
    assert summary["steps"] == 2 and torch.isfinite(torch.tensor(summary["final_loss"]))
