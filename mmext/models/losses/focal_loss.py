"""Sigmoid focal loss (Lin et al., ICCV 2017, eq. 5) of class-index labels, through mmext's op.

mmdet's ``FocalLoss`` builds an int64 one-hot target on the CPU and lets autograd keep a dozen
``[N, C]`` intermediates, which dominates a dense head's loss time outside the convolutions.
:func:`focal_loss_from_labels` computes a configured plain sigmoid ``FocalLoss`` with
:func:`mmext.ops.sigmoid_focal_loss_sum`, which picks the fused or plain backend for the device
itself; any other configured loss is called as it is.
"""
from typing import Union

import torch
import torch.nn as nn
from mmdet.models.losses import FocalLoss as MMDetFocalLoss
from torch import Tensor

from mmext.ops import SigmoidFocalLossSum, sigmoid_focal_loss_sum

__all__ = ['SigmoidFocalLossSum', 'focal_loss_from_labels']


def _is_plain_sigmoid_focal(loss_module: nn.Module) -> bool:
    """Whether ``loss_module`` computes exactly ``loss_weight * sum(FL) / avg_factor``: mmdet's
    own sigmoid ``FocalLoss`` (no subclass) on logits with mean reduction."""
    return (type(loss_module) is MMDetFocalLoss and loss_module.use_sigmoid
            and not loss_module.activated and loss_module.reduction == 'mean')


def focal_loss_from_labels(loss_module: nn.Module, logits: Tensor, labels: Tensor,
                           avg_factor: Union[Tensor, float]) -> Tensor:
    """``loss_module(logits [N, C], labels [N], avg_factor=avg_factor)``; mmdet's plain sigmoid
    ``FocalLoss`` is computed by :func:`mmext.ops.sigmoid_focal_loss_sum`."""
    if not _is_plain_sigmoid_focal(loss_module):
        return loss_module(logits, labels, avg_factor=avg_factor)
    total = sigmoid_focal_loss_sum(logits, labels, float(loss_module.gamma),
                                   float(loss_module.alpha))
    # mmdet's weight_reduce_loss: sum / (avg_factor + eps), then * loss_weight
    return loss_module.loss_weight * (total / (avg_factor + torch.finfo(torch.float32).eps))
