"""Softmax classification match cost (DETR, Carion et al., ECCV 2020, Sec. 3.1).

DETR's matching cost for query ``q`` and target ``g`` is
``-1{c_g != no-object} p_q(c_g) + L_box(b_q, b_g)``; this term is ``-p_q(c_g)`` with ``p_q`` the
softmax over the query's class logits (the constant 1 of a "probability of being wrong" cost
does not change the matching and is left out, as in mmdet).
"""
from torch import Tensor

from mmext.registry import TASK_UTILS

from .base import BatchedMatchCost, MatchBatch


@TASK_UTILS.register_module()
class ClassificationCost(BatchedMatchCost):
    """``-softmax(scores)[q, label_g] * weight``.

    Args:
        weight: Cost weight. Defaults to 1.
    """

    def batch_cost(self, batch: MatchBatch) -> Tensor:
        scores, labels = batch.require('pred_scores', 'gt_labels')
        prob = scores.softmax(-1)  # [B, Q, C]
        idx = labels[:, None, :].expand(-1, prob.shape[1], -1)  # [B, Q, G]
        return prob.gather(2, idx).neg_()
