"""Merging detections that several overlapping windows (tiles) made of the same objects.

Two methods, chosen by a config dict (:func:`merge_detections`):

* ``dict(type='nms', iou_threshold=0.5)``: class-wise non-maximum suppression (torchvision's
  ``batched_nms``): of boxes of one class that overlap by more than ``iou_threshold``, the best
  scored stays, unchanged.
* ``dict(type='wbf', iou_threshold=0.55, conf_type='avg')``: weighted box fusion (Solovyev et al.,
  "Weighted boxes fusion: Ensembling boxes from different object detection models", 2021,
  https://arxiv.org/abs/1910.13302, Sec. 3): boxes are visited by decreasing score; each joins
  the cluster (same class) whose fused box it overlaps most, if by more than ``iou_threshold``,
  or starts one.  A cluster's box is the score-weighted mean of its members' coordinates, its
  score their mean (``conf_type='avg'``) or maximum (``'max'``).  Unlike the paper's ensemble of
  ``T`` models, the windows that see an object vary in number (1 to 4), so scores are not
  rescaled by ``min(T, n) / T``.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

__all__ = ['merge_detections', 'weighted_box_fusion']


def weighted_box_fusion(bboxes: Tensor,
                        scores: Tensor,
                        labels: Tensor,
                        iou_threshold: float = 0.55,
                        conf_type: str = 'avg') -> Tuple[Tensor, Tensor, Tensor]:
    """Weighted box fusion of one image's boxes (see the module docstring).

    Args:
        bboxes: ``(N, 4)`` boxes ``(x1, y1, x2, y2)``.
        scores: ``(N, )`` scores (the weights; should be positive).
        labels: ``(N, )`` integer labels; only boxes of one label are fused.
        iou_threshold: A box joins a cluster whose fused box it overlaps by more than this.
        conf_type: ``'avg'`` (mean of the members' scores) or ``'max'``.

    Returns:
        tuple: ``(bboxes (M, 4), scores (M, ), labels (M, ))`` of the ``M <= N`` clusters, by
        decreasing score.
    """
    if conf_type not in ('avg', 'max'):
        raise ValueError(f"conf_type must be 'avg' or 'max', got {conf_type!r}")
    box_dtype, score_dtype = bboxes.dtype, scores.dtype
    order = scores.argsort(descending=True, stable=True)
    bboxes, scores, labels = bboxes[order].double(), scores[order].double(), labels[order]
    weighted = bboxes.new_zeros((0, 4))  # sum of score * box per cluster
    weights = bboxes.new_zeros((0, ))  # sum of scores
    best = bboxes.new_zeros((0, ))
    count = bboxes.new_zeros((0, ))
    cluster_labels = labels.new_zeros((0, ))
    for box, score, label in zip(bboxes, scores, labels):
        fused = weighted / weights.clamp(min=torch.finfo(weights.dtype).tiny)[:, None]
        k = -1
        if len(fused):
            iou = box_iou(box[None], fused)[0]
            iou[cluster_labels != label] = -1
            top = int(iou.argmax())
            if iou[top] > iou_threshold:
                k = top
        if k < 0:
            weighted = torch.cat([weighted, (score * box)[None]])
            weights = torch.cat([weights, score[None]])
            best = torch.cat([best, score[None]])
            count = torch.cat([count, count.new_ones(1)])
            cluster_labels = torch.cat([cluster_labels, label[None]])
        else:
            weighted[k] += score * box
            weights[k] += score
            best[k] = torch.maximum(best[k], score)
            count[k] += 1
    out_boxes = weighted / weights.clamp(min=torch.finfo(weights.dtype).tiny)[:, None]
    out_scores = weights / count.clamp(min=1) if conf_type == 'avg' else best
    order = out_scores.argsort(descending=True, stable=True)
    return (out_boxes[order].to(box_dtype), out_scores[order].to(score_dtype),
            cluster_labels[order])


def merge_detections(bboxes: Tensor,
                     scores: Tensor,
                     labels: Tensor,
                     cfg: Optional[dict] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Merge one image's detections gathered from overlapping windows.

    Args:
        bboxes: ``(N, 4)`` boxes ``(x1, y1, x2, y2)`` in the image's coordinates.
        scores: ``(N, )`` scores.
        labels: ``(N, )`` labels.
        cfg: ``dict(type='nms', iou_threshold=0.5)`` (the default),
            ``dict(type='wbf', iou_threshold=0.55, conf_type='avg')``, or
            ``dict(type='none')`` (keep all).

    Returns:
        tuple: ``(bboxes (M, 4), scores (M, ), labels (M, ))`` by decreasing score.
    """
    cfg = dict(cfg or dict(type='nms'))
    kind = cfg.pop('type', 'nms')
    if kind == 'nms':
        unknown = set(cfg) - {'iou_threshold'}
        if unknown:
            raise ValueError(f'merge type nms takes iou_threshold only, got {sorted(unknown)}')
        keep = batched_nms(bboxes.float(), scores.float(), labels, cfg.get('iou_threshold', 0.5))
        return bboxes[keep], scores[keep], labels[keep]
    if kind == 'wbf':
        return weighted_box_fusion(bboxes, scores, labels, **cfg)
    if kind == 'none':
        order = scores.argsort(descending=True, stable=True)
        return bboxes[order], scores[order], labels[order]
    raise ValueError(f"merge type must be 'nms', 'wbf' or 'none', got {kind!r}")
