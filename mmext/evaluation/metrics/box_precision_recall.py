"""Box precision and recall at an IoU threshold, by one-to-one matching (DeepForest's protocol).

DeepForest (``deepforest.evaluate.evaluate_boxes``, 2.x) scores a tree-crown detector so:

1. predictions below a score threshold are dropped (its default ``score_thresh`` is 0.1);
2. per image, ground-truth and predicted boxes are matched one-to-one by the assignment that
   maximises the total *intersection area* (Hungarian matching; a box may stay unmatched);
3. a matched pair is a true positive when its IoU is strictly above ``iou_threshold`` (0.4);
4. per image, recall = TP / ground-truth boxes and precision = TP / predictions (an image
   without predictions has recall 0 and no precision); images without ground truth are left out;
5. ``box_recall`` and ``box_precision`` are the means of the per-image values.

Class labels are not used: the scores are class-agnostic, as DeepForest's ``box_*`` ones.
Because a large image counts as much as a small one in those means, the pooled values
(``TP / all ground truth``, ``TP / all predictions``) are reported too.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmext.registry import METRICS

__all__ = ['BoxPrecisionRecall', 'box_iou_matrix', 'match_boxes']


def box_iou_matrix(gt: np.ndarray, pred: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Intersection areas and IoUs of every ground-truth / predicted pair.

    Args:
        gt: ``(G, 4)`` boxes ``(x1, y1, x2, y2)``.
        pred: ``(P, 4)`` boxes.

    Returns:
        tuple: ``(intersections (G, P), ious (G, P))``, float64; the IoU of two boxes of zero
        area is 0.
    """
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    w = (np.minimum(gt[:, None, 2], pred[None, :, 2]) -
         np.maximum(gt[:, None, 0], pred[None, :, 0])).clip(0)
    h = (np.minimum(gt[:, None, 3], pred[None, :, 3]) -
         np.maximum(gt[:, None, 1], pred[None, :, 1])).clip(0)
    inter = w * h
    area_g = (gt[:, 2] - gt[:, 0]).clip(0) * (gt[:, 3] - gt[:, 1]).clip(0)
    area_p = (pred[:, 2] - pred[:, 0]).clip(0) * (pred[:, 3] - pred[:, 1]).clip(0)
    union = area_g[:, None] + area_p[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return inter, iou


def match_boxes(gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.4) -> np.ndarray:
    """True positives of one image: the one-to-one assignment of maximal total intersection area,
    its pairs with IoU strictly above ``iou_threshold``.

    Args:
        gt: ``(G, 4)`` ground-truth boxes.
        pred: ``(P, 4)`` predicted boxes (already thresholded on score).
        iou_threshold: A matched pair counts when its IoU is above this.

    Returns:
        np.ndarray: ``(T, 2)`` int64 ``(gt index, pred index)`` of the ``T`` true positives.
    """
    inter, iou = box_iou_matrix(gt, pred)
    if inter.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # scipy belongs to the det extra; this metric is only used with detectors
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(inter, maximize=True)
    keep = iou[rows, cols] > iou_threshold
    return np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64)


def _boxes(instances: Any) -> np.ndarray:
    """``(N, 4)`` float64 boxes of an ``InstanceData`` dict (tensor or mmdet ``BaseBoxes``)."""
    if instances is None or 'bboxes' not in instances:
        return np.zeros((0, 4))
    boxes = instances['bboxes']
    boxes = getattr(boxes, 'tensor', boxes)  # mmdet's HorizontalBoxes
    if hasattr(boxes, 'detach'):
        boxes = boxes.detach().cpu().numpy()
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


@METRICS.register_module()
class BoxPrecisionRecall(BaseMetric):
    """DeepForest's box precision and recall (see the module docstring).

    Args:
        iou_threshold: A matched pair is a true positive when its IoU is above this.
            Defaults to 0.4 (DeepForest's).
        score_thr: Predictions scored below this are dropped first. Defaults to 0.1
            (DeepForest's ``score_thresh``).
        collect_device, prefix: As :class:`mmengine.evaluator.BaseMetric`; the default prefix is
            ``'deepforest'``.

    Each data sample needs ``pred_instances`` (``bboxes (N, 4)``, ``scores (N, )``) and the
    ground truth: ``gt_instances.bboxes`` (from mmdet's ``PackDetInputs``; ignored boxes, which
    ``PackDetInputs`` puts in ``ignored_instances``, are not counted), or else the ``instances``
    metainfo (its boxes with ``ignore_flag`` 0).

    Returns (``compute_metrics``): ``box_precision``, ``box_recall`` (per-image means, as
    DeepForest), ``box_precision_pooled``, ``box_recall_pooled``, and the counts ``tp``,
    ``num_gt``, ``num_pred``.
    """

    default_prefix: Optional[str] = 'deepforest'

    def __init__(self,
                 iou_threshold: float = 0.4,
                 score_thr: float = 0.1,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not 0 <= iou_threshold < 1:
            raise ValueError(f'iou_threshold must be in [0, 1), got {iou_threshold}')
        self.iou_threshold = iou_threshold
        self.score_thr = score_thr

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample['pred_instances']
            scores = pred['scores']
            scores = np.asarray(
                scores.detach().cpu().numpy() if hasattr(scores, 'detach') else scores,
                dtype=np.float64).reshape(-1)
            pred_boxes = _boxes(pred)[scores >= self.score_thr]
            if 'gt_instances' in sample:
                gt_boxes = _boxes(sample['gt_instances'])
            elif 'instances' in sample:
                gt_boxes = np.array(
                    [i['bbox'] for i in sample['instances'] if not i.get('ignore_flag', 0)],
                    dtype=np.float64).reshape(-1, 4)
            else:
                raise KeyError('BoxPrecisionRecall: a data sample has neither gt_instances nor '
                               "the 'instances' metainfo (add it to PackDetInputs' meta_keys)")
            tp = len(match_boxes(gt_boxes, pred_boxes, self.iou_threshold))
            self.results.append(dict(tp=tp, num_gt=len(gt_boxes), num_pred=len(pred_boxes)))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        recalls, precisions = [], []
        for r in results:
            if r['num_gt'] == 0:
                continue  # DeepForest iterates over the images of the ground truth
            recalls.append(r['tp'] / r['num_gt'])
            if r['num_pred'] > 0:
                precisions.append(r['tp'] / r['num_pred'])
        tp = sum(r['tp'] for r in results)
        num_gt = sum(r['num_gt'] for r in results)
        num_pred = sum(r['num_pred'] for r in results)
        if not recalls:
            print_log('BoxPrecisionRecall: no image with ground truth', logger='current')
        return dict(
            box_precision=float(np.mean(precisions)) if precisions else float('nan'),
            box_recall=float(np.mean(recalls)) if recalls else float('nan'),
            box_precision_pooled=tp / num_pred if num_pred else float('nan'),
            box_recall_pooled=tp / num_gt if num_gt else float('nan'),
            tp=float(tp),
            num_gt=float(num_gt),
            num_pred=float(num_pred))
