"""The batch interface for a match cost that only works image by image (e.g. one only mmdet has),
so the assigner sums every term the same way."""
from typing import Any

import torch
from torch import Tensor

from .base import BatchedMatchCost, MatchBatch

__all__ = ['PerImageMatchCost', 'as_batched_cost']


class PerImageMatchCost:
    """``weighted_batch_cost`` for a term with mmdet's per-image ``__call__``: one call per image
    with both predictions and targets, padded into ``[B, Q_max, G_max]`` (zeros elsewhere).

    Args:
        cost: Called as ``cost(pred_instances=, gt_instances=, img_meta=)`` -> weighted
            ``[Q, G]``.
    """

    def __init__(self, cost: Any) -> None:
        self.cost = cost

    def weighted_batch_cost(self, batch: MatchBatch) -> Tensor:
        B = len(batch.pred_instances)
        Q, G = int(batch.num_preds.max()), int(batch.num_gts.max())
        out = None
        for b, (p, g,
                m) in enumerate(zip(batch.pred_instances, batch.gt_instances, batch.img_metas)):
            if len(p) == 0 or len(g) == 0:
                continue
            c = self.cost(pred_instances=p, gt_instances=g, img_meta=m)
            if out is None:
                out = c.new_zeros(B, Q, G)
            out[b, :c.shape[0], :c.shape[1]] = c
        return out if out is not None else batch.num_gts.new_zeros(B, Q, G, dtype=torch.float32)


def as_batched_cost(cost: Any) -> Any:
    """``cost`` itself when it is one of mmext's batched terms, else wrapped in
    :class:`PerImageMatchCost`."""
    return cost if isinstance(cost, BatchedMatchCost) else PerImageMatchCost(cost)
