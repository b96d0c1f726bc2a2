"""Focal-loss match cost (Deformable DETR, Zhu et al., ICLR 2021; focal loss: Lin et al., 2017).

For the sigmoid probability ``p`` of the target's class, the cost is the focal loss of calling it
positive minus the focal loss of calling it negative:
``alpha (1-p)^gamma (-log(p+eps)) - (1-alpha) p^gamma (-log(1-p+eps))``.
With ``binary_input=True`` the same per-pixel terms are averaged over mask points against binary
target masks (``[Q, P]`` vs ``[G, P]``).
"""
from typing import Union

import torch
from torch import Tensor

from mmext.registry import TASK_UTILS

from .base import BatchedMatchCost, MatchBatch


@TASK_UTILS.register_module()
class FocalLossCost(BatchedMatchCost):
    """Focal-loss classification (or binary mask) match cost.

    Args:
        alpha: Focal loss alpha. Defaults to 0.25.
        gamma: Focal loss gamma. Defaults to 2.
        eps: Added inside the logs. Defaults to 1e-12.
        binary_input: Compare ``masks`` (binary targets) instead of ``scores``/``labels``.
        weight: Cost weight. Defaults to 1.
    """

    def __init__(self,
                 alpha: Union[float, int] = 0.25,
                 gamma: Union[float, int] = 2,
                 eps: float = 1e-12,
                 binary_input: bool = False,
                 weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        self.alpha = alpha
        self.gamma = gamma
        self.eps = eps
        self.binary_input = binary_input

    def _pos_neg(self, logits: Tensor):
        p = logits.sigmoid()
        neg = -(1 - p + self.eps).log() * (1 - self.alpha) * p.pow(self.gamma)
        pos = -(p + self.eps).log() * self.alpha * (1 - p).pow(self.gamma)
        return pos, neg

    def batch_cost(self, batch: MatchBatch) -> Tensor:
        if self.binary_input:
            pred, gt = batch.require('pred_masks', 'gt_masks')
            pos, neg = self._pos_neg(pred)  # [B, Q, P]
            gt = gt.float()
            cost = torch.einsum('bqp,bgp->bqg', pos, gt) + \
                torch.einsum('bqp,bgp->bqg', neg, 1 - gt)
            return cost / pred.shape[-1]
        scores, labels = batch.require('pred_scores', 'gt_labels')
        idx = labels[:, None, :].expand(-1, scores.shape[1], -1)  # [B, Q, G]
        if idx.shape[-1] < scores.shape[-1]:  # elementwise, so gather first when G < C
            pos, neg = self._pos_neg(scores.gather(2, idx))
            return pos - neg
        pos, neg = self._pos_neg(scores)  # [B, Q, C]
        return pos.gather(2, idx) - neg.gather(2, idx)
