"""IoU / generalised-IoU match cost (DETR, Carion et al., ECCV 2020, eq. 2; GIoU: Rezatofighi et
al., CVPR 2019).  The cost is ``-IoU`` (the ``1 -`` of the loss does not change the matching)."""
from typing import Union

import torch
from torch import Tensor

from mmext.ops import fused_match_costs_usable, pairwise_box_iou
from mmext.registry import TASK_UTILS
from .base import BatchedMatchCost, MatchBatch

EPS = 1e-6  # floor of union and enclosing area, as mmdet's bbox_overlaps


def pairwise_iou(pred: Tensor, gt: Tensor, mode: str = 'giou', eps: float = EPS) -> Tensor:
    """IoU/IoF/GIoU of every ``pred [B, Q, 4]`` with every ``gt [B, G, 4]`` (xyxy) -> ``[B, Q, G]``.

    Written for few memory passes: one ``[B, Q, G]`` tensor per coordinate axis instead of
    ``[B, Q, G, 2]`` stacks, contiguous operands, in-place updates, and the enclosing box from
    ``max(a2, b2) - min(a1, b1) = w_a + w_b - (min(a2, b2) - max(a1, b1))`` (exact in reals) so
    the enclosure costs no extra min/max passes.  Agrees with mmdet's ``bbox_overlaps`` to float
    rounding (tested at atol 1e-6).
    """
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


@TASK_UTILS.register_module()
class IoUCost(BatchedMatchCost):
    """``-IoU(b_q, b_g) * weight`` on pixel ``xyxy`` boxes.

    Args:
        iou_mode: ``'iou'``, ``'iof'`` or ``'giou'``. Defaults to ``'giou'``.
        weight: Cost weight. Defaults to 1.
    """

    def __init__(self, iou_mode: str = 'giou', weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        if iou_mode not in ('iou', 'iof', 'giou'):
            raise ValueError(f"iou_mode must be 'iou', 'iof' or 'giou', got {iou_mode!r}")
        self.iou_mode = iou_mode

    def batch_cost(self, batch: MatchBatch) -> Tensor:
        pred, gt = batch.require('pred_bboxes', 'gt_bboxes')
        dtype = pred.dtype
        if dtype in (torch.float16, torch.bfloat16):  # areas overflow half precision
            pred, gt = pred.float(), gt.float()
        gt = gt.to(pred.dtype)
        if fused_match_costs_usable(pred, gt):  # the same arithmetic in one compiled pass
            return pairwise_box_iou(pred, gt, self.iou_mode, EPS, scale=-1.).to(dtype)
        return pairwise_iou(pred, gt, self.iou_mode).neg_().to(dtype)
