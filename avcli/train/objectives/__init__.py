"""Each method's objective (one module per `method.kind`): a batch of every window slot → loss and health."""

from __future__ import annotations

from avcli.train.objectives.avts import AVTSObjective
from avcli.train.objectives.base import Objective, TrainBatch
from avcli.train.objectives.robust_xid import RobustXIDBankObjective, RobustXIDObjective
from avcli.train.objectives.temporal import TemporalObjective
from avcli.train.objectives.xid import MoviesObjective, XIDObjective


def build_objective(recipe, model, items) -> Objective:
    """The objective of `recipe.method`, with its state sized from the catalog `items` and the model's dims."""
    method = recipe.method
    dim = recipe.model.projector.out_dim
    if method.kind == "xid":
        return XIDObjective(method, len(items), dim, seed=recipe.training.seed)
    if method.kind == "robust_xid":
        kind = RobustXIDBankObjective if method.bank_negatives else RobustXIDObjective
        return kind(method, len(items), dim, faulty=[bool(i.extra.get("faulty", False)) for i in items],
                    seed=recipe.training.seed)
    if method.kind == "avts":
        return AVTSObjective(method, dim, model=model, data=recipe.data)
    if method.kind == "temporal":
        return TemporalObjective(method, tuple(recipe.data.sampler.speeds), model.video.out_dim, model.audio.out_dim,
                                 dim, len(items))
    if method.kind == "movies":
        return MoviesObjective(method, [i.title_id or i.item_id for i in items])
    raise ValueError(f"method.kind={method.kind!r} has no objective")


__all__ = ["Objective", "TrainBatch", "build_objective"]
