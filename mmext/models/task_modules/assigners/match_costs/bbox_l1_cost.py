"""L1 box match cost on image-size-normalised boxes (DETR, Carion et al., ECCV 2020, eq. 2).

Boxes arrive as pixel ``xyxy``; both sides are divided by ``(w, h, w, h)`` of the image and,
with ``box_format='xywh'``, compared as ``(cx, cy, w, h)`` as DETR does.
"""
from typing import Union

import torch
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from torch import Tensor

from mmext.ops import pairwise_box_l1
from mmext.registry import TASK_UTILS

from .base import BatchedMatchCost, MatchBatch


@TASK_UTILS.register_module()
class BBoxL1Cost(BatchedMatchCost):
    """``sum |b_q - b_g|`` over the four normalised coordinates, times ``weight``.

    Args:
        box_format: ``'xyxy'`` (DETR-style configs in mmdet) or ``'xywh'`` (centre-size).
        weight: Cost weight. Defaults to 1.
    """

    def __init__(self, box_format: str = 'xyxy', weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        if box_format not in ('xyxy', 'xywh'):
            raise ValueError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")
        self.box_format = box_format

    def batch_cost(self, batch: MatchBatch) -> Tensor:
        pred, gt, hw = batch.require('pred_bboxes', 'gt_bboxes', 'img_hw')
        if self.box_format == 'xywh':
            pred, gt = bbox_xyxy_to_cxcywh(pred), bbox_xyxy_to_cxcywh(gt)
        h, w = hw.to(gt.dtype).unbind(-1)
        factor = torch.stack((w, h, w, h), dim=-1)[:, None, :]  # [B, 1, 4]
        pred, gt = pred / factor, gt / factor
        return pairwise_box_l1(pred, gt)
