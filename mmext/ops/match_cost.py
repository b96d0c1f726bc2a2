"""Pairwise box match costs for ``[B, Q, 4]`` predictions against ``[B, G, 4]`` targets.

:func:`pairwise_box_l1` and :func:`pairwise_box_iou` choose their backend themselves:

* the fused CPU kernels (``csrc/pytorch/cpu/match_cost_cpu.cpp``) compute each ``[B, Q, G]``
  block in one pass, without the ~20 temporary ``[B, Q, G]`` tensors of the torch expressions;
  taken for CPU float32/float64 inputs without gradients when mmext's ops are built;
* otherwise the torch expressions below (any device and dtype, differentiable).

The kernels do the same operations in the same order as the torch expressions, so both
backends give bit-identical results (``tests/ops/test_match_cost_ops.py``).
``fused_match_costs(False)`` (or ``MMEXT_DISABLE_FUSED_MATCH_COSTS=1``) forces the torch
expressions, for tests and benchmarks.
"""
import contextlib
import os
from typing import Iterator

import torch
from torch import Tensor

from mmext.utils.ext_loader import ext_available, load_ext

__all__ = [
    'IOU_MODES', 'fused_match_costs', 'fused_match_costs_usable', 'pairwise_box_iou',
    'pairwise_box_l1'
]

IOU_MODES = {'iou': 0, 'iof': 1, 'giou': 2}
_FUNCS = ('pairwise_box_l1', 'pairwise_box_iou')
_enabled = os.getenv('MMEXT_DISABLE_FUSED_MATCH_COSTS', '0') != '1'


@contextlib.contextmanager
def fused_match_costs(enabled: bool) -> Iterator[None]:
    """Switch the fused kernels on or off inside a ``with`` block (tests, benchmarks)."""
    global _enabled
    previous, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = previous


def fused_match_costs_usable(*tensors: Tensor) -> bool:
    """Whether the ops below take the fused kernels for these inputs."""
    if not _enabled or not ext_available('_ext', _FUNCS):
        return False
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    return not grad and all(t.device.type == 'cpu' and t.dtype in (torch.float32, torch.float64)
                            for t in tensors)


def _ext():
    return load_ext('_ext', _FUNCS)


def _box_l1_torch(pred: Tensor, gt: Tensor) -> Tensor:
    # sum_k |p_k - g_k| from contiguous per-coordinate vectors: the same sums as
    # torch.cdist(p=1), but vectorised broadcast passes (cdist is ~2x slower on CPU here).
    ps = pred.permute(2, 0, 1).contiguous()  # [4, B, Q]
    gs = gt.permute(2, 0, 1).contiguous()  # [4, B, G]
    cost = (ps[0][:, :, None] - gs[0][:, None, :]).abs_()
    for k in range(1, 4):
        cost.add_((ps[k][:, :, None] - gs[k][:, None, :]).abs_())
    return cost


def _box_iou_torch(pred: Tensor, gt: Tensor, mode: str, eps: float) -> Tensor:
    """IoU/IoF/GIoU with few memory passes: one ``[B, Q, G]`` tensor per coordinate axis instead
    of ``[B, Q, G, 2]`` stacks, contiguous operands, in-place updates, and the enclosing box from
    ``max(a2, b2) - min(a1, b1) = w_a + w_b - (min(a2, b2) - max(a1, b1))`` (exact in reals), so
    the enclosure costs no extra min/max passes.  Agrees with mmdet's ``bbox_overlaps`` to float
    rounding (tested at atol 1e-6)."""
    # Contiguous per-coordinate vectors: a strided `boxes[..., k]` operand makes every broadcast
    # pass below several times slower on CPU (no vectorised inner loop).
    px1, py1, px2, py2 = (t[:, :, None] for t in pred.permute(2, 0, 1).contiguous())  # B,Q,1
    gx1, gy1, gx2, gy2 = (t[:, None, :] for t in gt.permute(2, 0, 1).contiguous())  # [B, 1, G]
    iw = torch.minimum(px2, gx2).sub_(torch.maximum(px1, gx1))  # unclamped overlap width
    ih = torch.minimum(py2, gy2).sub_(torch.maximum(py1, gy1))
    pw, ph, gw, gh = px2 - px1, py2 - py1, gx2 - gx1, gy2 - gy1
    if mode == 'giou':
        ew = (pw + gw).sub_(iw)  # enclosing width (before iw is clamped below)
        eh = (ph + gh).sub_(ih)
    inter = iw.clamp_(min=0).mul_(ih.clamp_(min=0))
    if mode == 'iof':
        return inter.div_((pw * ph).clamp_(min=eps))
    union = (pw * ph + gw * gh).sub_(inter).clamp_(min=eps)
    iou = inter.div_(union)
    if mode == 'iou':
        return iou
    enclose = ew.clamp_(min=0).mul_(eh.clamp_(min=0)).clamp_(min=eps)
    return iou.sub_((enclose - union).div_(enclose))  # GIoU = IoU - area(C minus (A u B)) / area(C)


def pairwise_box_l1(pred: Tensor, gt: Tensor, scale: float = 1.) -> Tensor:
    """``[B, Q, G]``: ``scale * sum_k |pred[b, q, k] - gt[b, g, k]|`` for ``pred [B, Q, 4]``,
    ``gt [B, G, 4]``."""
    if fused_match_costs_usable(pred, gt):
        return _ext().pairwise_box_l1(pred, gt, scale)
    cost = _box_l1_torch(pred, gt)
    return cost if scale == 1 else cost.mul_(scale)


def pairwise_box_iou(pred: Tensor,
                     gt: Tensor,
                     mode: str = 'giou',
                     eps: float = 1e-6,
                     scale: float = 1.) -> Tensor:
    """``[B, Q, G]``: ``scale * IoU`` (``mode`` 'iou', 'iof' or 'giou') of every pair of xyxy
    boxes ``pred [B, Q, 4]``, ``gt [B, G, 4]``; areas floored at ``eps`` as mmdet's
    ``bbox_overlaps``."""
    if mode not in IOU_MODES:
        raise ValueError(f'mode must be one of {tuple(IOU_MODES)}, got {mode!r}')
    if fused_match_costs_usable(pred, gt):
        return _ext().pairwise_box_iou(pred, gt, IOU_MODES[mode], eps, scale)
    iou = _box_iou_torch(pred, gt, mode, eps)
    return iou if scale == 1 else iou.mul_(scale)
