"""Losses: pure functions of tensors and small modules; no I/O, no globals (METHODS.md §1–§4)."""

from avcli.losses.avts import FusedSyncClassifier, avts_margin_loss, fused_sync_loss, sync_accuracy
from avcli.losses.infonce import infonce, infonce_local, retrieval_accuracy
from avcli.losses.memory_bank import (
    MemoryBank,
    PartitionEstimate,
    bank_logits,
    cross_modal_bank_loss,
    nce_constant_z_loss,
    sample_negatives,
    softmax_bank_loss,
)
from avcli.losses.robust import (
    AgreementStats,
    faulty_positive_weights,
    pair_agreement,
    robust_xid_loss,
    robust_xid_rows,
    soft_target_pair,
    soft_target_xent,
    soft_targets,
    weighted_mean,
)
from avcli.losses.temporal import (
    FeatureQueue,
    TemporalHeads,
    binary_accuracy,
    contrastive_rows,
    contrastive_with_extras,
    direction_loss,
    order_loss,
    speed_loss,
)

__all__ = [
    "AgreementStats",
    "FeatureQueue",
    "FusedSyncClassifier",
    "MemoryBank",
    "PartitionEstimate",
    "TemporalHeads",
    "avts_margin_loss",
    "bank_logits",
    "binary_accuracy",
    "contrastive_rows",
    "contrastive_with_extras",
    "cross_modal_bank_loss",
    "direction_loss",
    "faulty_positive_weights",
    "fused_sync_loss",
    "infonce",
    "infonce_local",
    "nce_constant_z_loss",
    "order_loss",
    "pair_agreement",
    "retrieval_accuracy",
    "robust_xid_loss",
    "robust_xid_rows",
    "sample_negatives",
    "soft_target_pair",
    "soft_target_xent",
    "soft_targets",
    "softmax_bank_loss",
    "speed_loss",
    "sync_accuracy",
    "weighted_mean",
]
