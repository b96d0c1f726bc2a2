"""IoU / generalised-IoU match cost (DETR, Carion et al., ECCV 2020, eq. 2; GIoU: Rezatofighi et
al., CVPR 2019).  The cost is ``-IoU`` (the ``1 -`` of the loss does not change the matching)."""
from typing import Union

import torch
from torch import Tensor

from mmext.ops import pairwise_box_iou
from mmext.registry import TASK_UTILS

from .base import BatchedMatchCost, MatchBatch

EPS = 1e-6  # floor of union and enclosing area, as mmdet's bbox_overlaps


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
        return pairwise_box_iou(pred, gt, self.iou_mode, EPS, scale=-1.).to(dtype)
