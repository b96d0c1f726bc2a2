"""Sigmoid focal loss (Lin et al., ICCV 2017, eq. 5) summed over class-index labels, fused for CPU.

``FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)`` over every (sample, class) pair of ``[N, C]``
logits, where label ``C`` (or any value outside ``[0, C)``) means background.  mmdet's
``FocalLoss`` computes the same value; on CUDA it calls mmcv's fused kernel, but on CPU it builds
an int64 one-hot target and lets autograd keep a dozen ``[N, C]`` intermediates, which dominates a
dense head's loss time outside the convolutions.  :func:`focal_loss_from_labels` takes the fused
path exactly when it computes what the configured mmdet loss would.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.losses import FocalLoss as MMDetFocalLoss
from torch import Tensor

__all__ = ['SigmoidFocalLossSum', 'focal_loss_from_labels']


class SigmoidFocalLossSum(torch.autograd.Function):
    """Sum over ``[N, C]`` logits of mmdet's sigmoid focal loss (Lin et al., 2017) with class-index
    labels (``C`` = background), forward and analytic gradient in about a dozen elementwise passes.

    mmdet's CPU path builds an int64 one-hot target, goes through
    ``binary_cross_entropy_with_logits`` (whose ``log1p`` is not vectorised on CPU) and lets
    autograd save a dozen ``[N, C]`` intermediates: most of the head's loss time outside the
    convs.  Per element, with ``p = sigmoid(x)`` and ``softplus(x) = -log(1 - p)``:

    * negative: ``(1 - a) p^g softplus(x)``, gradient ``(1 - a) p^g (g (1 - p) softplus(x) + p)``;
    * positive: ``a (1 - p)^g softplus(-x)``, gradient ``-a (1 - p)^g (g p softplus(-x) + 1 - p)``.

    The gradient is formed in forward (all its inputs are at hand there), so backward is a single
    multiplication and only one ``[N, C]`` tensor is kept.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, gamma: float, alpha: float) -> Tensor:
        x = logits.detach()
        p = torch.sigmoid(x)
        # softplus(x) = max(x, 0) - log(sigmoid(|x|)), exact to ~1e-7 absolute for every x and
        # 10x faster than F.softplus on CPU (log is vectorised, log1p is not)
        relu_x = x.clamp(min=0)
        softplus = torch.sigmoid(x.abs()).log_().neg_().add_(relu_x)
        one_minus_p = torch.neg(p, out=relu_x).add_(1)  # reuse the buffer: [N, C] allocs are costly
        p_gamma = p.pow(gamma)
        grad = torch.addcmul(p, softplus, one_minus_p, value=gamma).mul_(p_gamma).mul_(1 - alpha)
        loss = p_gamma.mul_(softplus)          # every entry as a negative, before (1 - alpha)

        rows = ((labels >= 0) & (labels < x.size(1))).nonzero().squeeze(1)
        cols = labels[rows]
        loss[rows, cols] = 0
        x_pos, p_pos = x[rows, cols], p[rows, cols]
        softplus_pos = F.softplus(-x_pos)      # -log(p); few entries, so the exact op
        q_gamma = (1 - p_pos).pow(gamma)
        grad[rows, cols] = -alpha * q_gamma * (gamma * p_pos * softplus_pos + (1 - p_pos))
        ctx.save_for_backward(grad)
        return (1 - alpha) * loss.sum() + alpha * (q_gamma * softplus_pos).sum()

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], None, None, None]:
        grad, = ctx.saved_tensors
        return grad * grad_output, None, None, None


def focal_loss_from_labels(loss_module: nn.Module, logits: Tensor, labels: Tensor,
                           avg_factor: Union[Tensor, float]) -> Tensor:
    """``loss_module(logits, labels, avg_factor=avg_factor)``, computed by
    :class:`SigmoidFocalLossSum` when ``loss_module`` is mmdet's plain sigmoid ``FocalLoss`` with
    mean reduction and the logits are float32/64 on the CPU; any other loss or device goes to
    ``loss_module`` itself."""
    if (type(loss_module) is MMDetFocalLoss and loss_module.use_sigmoid
            and not loss_module.activated and loss_module.reduction == 'mean'
            and logits.device.type == 'cpu' and logits.dtype in (torch.float32, torch.float64)):
        total = SigmoidFocalLossSum.apply(logits, labels, float(loss_module.gamma),
                                          float(loss_module.alpha))
        # mmdet's weight_reduce_loss: sum / (avg_factor + eps), then * loss_weight
        return loss_module.loss_weight * (total / (avg_factor + torch.finfo(torch.float32).eps))
    return loss_module(logits, labels, avg_factor=avg_factor)
