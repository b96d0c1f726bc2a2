"""Sum of the sigmoid focal loss (Lin et al., ICCV 2017, eq. 5) over ``[N, C]`` logits with
class-index labels (``C``, or any value outside ``[0, C)``, means background).

``FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)`` over every (sample, class) pair.
:func:`sigmoid_focal_loss_sum` chooses its backend itself, and each backend computes what mmdet's
``FocalLoss`` computes on that device:

* CPU float32/float64: :class:`SigmoidFocalLossSum`, a fused forward with an analytic backward
  (about a dozen elementwise passes, one saved ``[N, C]`` tensor).  mmdet's CPU path builds an
  int64 one-hot target and lets autograd keep a dozen ``[N, C]`` intermediates;
* CUDA: mmcv's ``sigmoid_focal_loss`` kernel, which mmdet calls there, when mmcv's ops are
  installed (imported on first use: ``mmext.ops`` never needs mmcv);
* anything else (other devices or dtypes, no mmcv): the one-hot torch expression mmdet runs on
  the CPU, operation for operation.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['SigmoidFocalLossSum', 'sigmoid_focal_loss_sum']


class SigmoidFocalLossSum(torch.autograd.Function):
    """Sum over ``[N, C]`` logits of the sigmoid focal loss with class-index labels, forward and
    analytic gradient in about a dozen elementwise passes.

    Per element, with ``p = sigmoid(x)`` and ``softplus(x) = -log(1 - p)``:

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
        loss = p_gamma.mul_(softplus)  # every entry as a negative, before (1 - alpha)

        rows = ((labels >= 0) & (labels < x.size(1))).nonzero().squeeze(1)
        cols = labels[rows]
        loss[rows, cols] = 0
        x_pos, p_pos = x[rows, cols], p[rows, cols]
        softplus_pos = F.softplus(-x_pos)  # -log(p); few entries, so the exact op
        q_gamma = (1 - p_pos).pow(gamma)
        grad[rows, cols] = -alpha * q_gamma * (gamma * p_pos * softplus_pos + (1 - p_pos))
        ctx.save_for_backward(grad)
        return (1 - alpha) * loss.sum() + alpha * (q_gamma * softplus_pos).sum()

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], None, None, None]:
        grad, = ctx.saved_tensors
        return grad * grad_output, None, None, None


def _torch_one_hot(logits: Tensor, labels: Tensor, gamma: float, alpha: float) -> Tensor:
    """The unfused expression, in the order of operations of mmdet's ``py_sigmoid_focal_loss``
    on a one-hot target (so the same bits as mmdet's CPU path)."""
    num_classes = logits.size(1)
    target = F.one_hot(labels, num_classes=num_classes + 1)[:, :num_classes].type_as(logits)
    p = logits.sigmoid()
    pt = (1 - p) * target + p * (1 - target)  # 1 - p_t of the paper
    focal_weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction='none') * focal_weight
    return loss.sum()


_mmcv_kernel = None


def _mmcv_cuda_kernel():
    """mmcv's ``sigmoid_focal_loss`` when mmcv with compiled ops is installed, else ``None``."""
    global _mmcv_kernel
    if _mmcv_kernel is None:
        try:
            from mmcv.ops import sigmoid_focal_loss
        except ImportError:  # no mmcv, or mmcv-lite without ops
            sigmoid_focal_loss = False
        _mmcv_kernel = sigmoid_focal_loss
    return _mmcv_kernel or None


def sigmoid_focal_loss_sum(logits: Tensor,
                           labels: Tensor,
                           gamma: float = 2.0,
                           alpha: float = 0.25) -> Tensor:
    """Scalar sum of the sigmoid focal loss of ``logits [N, C]`` against ``labels [N]`` (long;
    ``C`` = background), differentiable in ``logits``: what mmdet's
    ``FocalLoss(gamma=gamma, alpha=alpha, reduction='sum')(logits, labels)`` computes on that
    device (the fused CPU path to float rounding, the others bit for bit)."""
    if logits.device.type == 'cpu' and logits.dtype in (torch.float32, torch.float64):
        return SigmoidFocalLossSum.apply(logits, labels, float(gamma), float(alpha))
    kernel = _mmcv_cuda_kernel() if logits.is_cuda else None
    if kernel is not None:
        return kernel(logits.contiguous(), labels.contiguous(), gamma, alpha, None, 'none').sum()
    return _torch_one_hot(logits, labels, gamma, alpha)
