"""Dice mask match cost (V-Net, Milletari et al., 3DV 2016; used for matching by MaskFormer,
Cheng et al., NeurIPS 2021)."""
from typing import Union

import torch
from torch import Tensor

from mmext.registry import TASK_UTILS

from .base import BatchedMatchCost, MatchBatch


@TASK_UTILS.register_module()
class DiceCost(BatchedMatchCost):
    """``1 - (2 <m_q, t_g> + eps) / (|m_q| + |t_g| + eps)`` over flattened masks.

    Args:
        pred_act: Apply a sigmoid to the predicted masks first. Defaults to False.
        eps: Smoothing term. Defaults to 1e-3.
        naive_dice: Denominator with first powers (True) or squares (False, as K-Net/SOLO).
        weight: Cost weight. Defaults to 1.
    """

    def __init__(self,
                 pred_act: bool = False,
                 eps: float = 1e-3,
                 naive_dice: bool = True,
                 weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        self.pred_act = pred_act
        self.eps = eps
        self.naive_dice = naive_dice

    def batch_cost(self, batch: MatchBatch) -> Tensor:
        pred, gt = batch.require('pred_masks', 'gt_masks')
        if self.pred_act:
            pred = pred.sigmoid()
        gt = gt.float()
        inter = 2 * torch.einsum('bqp,bgp->bqg', pred, gt)
        if self.naive_dice:
            denom = pred.sum(-1)[:, :, None] + gt.sum(-1)[:, None, :]
        else:
            denom = pred.pow(2).sum(-1)[:, :, None] + gt.pow(2).sum(-1)[:, None, :]
        return 1 - (inter + self.eps) / (denom + self.eps)
