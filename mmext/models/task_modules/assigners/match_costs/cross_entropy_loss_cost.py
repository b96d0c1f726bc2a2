"""Binary cross-entropy mask match cost (MaskFormer, Cheng et al., NeurIPS 2021, Sec. 3.2).

Mean over the ``P`` sampled mask points of the sigmoid BCE between query ``q``'s mask logits and
target ``g``'s binary mask.  ``BCE(x, t) = t * BCE(x, 1) + (1 - t) * BCE(x, 0)``, so the whole
``[Q, G]`` matrix is two matrix products instead of ``Q * G`` loss evaluations.
"""
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

from mmext.registry import TASK_UTILS

from .base import BatchedMatchCost, MatchBatch


@TASK_UTILS.register_module()
class CrossEntropyLossCost(BatchedMatchCost):
    """Point-averaged sigmoid BCE between mask logits ``[Q, P]`` and binary masks ``[G, P]``.

    Args:
        use_sigmoid: Must be True (softmax masks are not defined for this cost).
        weight: Cost weight. Defaults to 1.
    """

    def __init__(self, use_sigmoid: bool = True, weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        if not use_sigmoid:
            raise ValueError('CrossEntropyLossCost: use_sigmoid=False is not supported; mask '
                             'logits are scored per point with a sigmoid (as in mmdet)')
        self.use_sigmoid = use_sigmoid

    def batch_cost(self, batch: MatchBatch) -> Tensor:
        pred, gt = batch.require('pred_masks', 'gt_masks')
        pred, gt = pred.float(), gt.float()
        pos = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred), reduction='none')
        neg = F.binary_cross_entropy_with_logits(pred, torch.zeros_like(pred), reduction='none')
        cost = torch.einsum('bqp,bgp->bqg', pos, gt) + torch.einsum('bqp,bgp->bqg', neg, 1 - gt)
        return cost / pred.shape[-1]
