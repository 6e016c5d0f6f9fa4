"""Clip samplers: small strategy objects deciding where every clip comes from (pytorchvideo style).

Each is a batch sampler yielding this rank's batches as lists of `SampleSpec` (avcli/data/sample_spec.py);
everything is a function of (seed, epoch), ranks take disjoint shares, and `set_epoch(epoch, start_batch)`
resumes part-way into an epoch. See base.py for the shared contract and the window placement rule.
"""

from avcli.data.samplers.base import (ClipGeometry, Placement, SpecBatchSampler, centred_window, random_window,
                                      span_of, window_in_extent)
from avcli.data.samplers.hierarchical import HierarchicalSampler
from avcli.data.samplers.sync_pairs import SyncPairSampler
from avcli.data.samplers.temporal import TemporalSampler
from avcli.data.samplers.uniform import UniformSampler

_BY_KIND = {
    "uniform": UniformSampler,
    "hierarchical": HierarchicalSampler,
    "sync_pairs": SyncPairSampler,
    "temporal": TemporalSampler,
}


# options of `data.sampler` that say how the clip dataset decodes the windows, not where they are
DECODING_OPTIONS = {"audio_speed"}


def build_sampler(data_cfg, items, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> SpecBatchSampler:
    """The batch sampler a recipe's `data.sampler` names (its options are the sampler's keyword arguments)."""
    options = data_cfg.sampler.model_dump(exclude={"kind"} | DECODING_OPTIONS)
    cls = _BY_KIND[data_cfg.sampler.kind]
    return cls(items, data_cfg.clip, batch_size, seed, rank, world_size, clips_per_item=data_cfg.clips_per_item, **options)

__all__ = [
    "ClipGeometry",
    "HierarchicalSampler",
    "Placement",
    "SpecBatchSampler",
    "SyncPairSampler",
    "TemporalSampler",
    "UniformSampler",
    "build_sampler",
    "centred_window",
    "random_window",
    "span_of",
    "window_in_extent",
]
