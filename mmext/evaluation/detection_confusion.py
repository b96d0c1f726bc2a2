"""Confusion matrix of a detector, with a background row and a background column.

For ``C`` classes the matrix has shape ``(C + 1, C + 1)``:

* rows are the **ground-truth** class, columns the **predicted** class;
* the last row (``C``, "background") counts predictions that match no ground truth (false
  positives on background), in the column of their predicted class;
* the last column (``C``, "background") counts ground-truth boxes that no prediction matched
  (missed objects), in the row of their class;
* cell ``[C, C]`` is always 0: a detector's "true negatives" are not countable.

So, for every class ``c < C``: row ``c`` sums to the number of ground-truth boxes of class ``c``
(each box lands in exactly one cell), column ``c`` sums to the number of predictions of class
``c`` kept by the score threshold (each prediction lands in exactly one cell, unless it only
overlaps an ignored box, see below), and ``[c, c]`` is the number of true positives of class
``c``.

**Matching**, per image.  Predictions with ``score >= score_thr`` are kept and visited in order
of decreasing score (stable for equal scores).  A prediction and a ground-truth box *overlap*
when their IoU is ``>= iou_thr``.  Matching is one-to-one: each box and each prediction is
matched at most once.

1. *Same class first*: each prediction, in score order, takes the still unmatched ground-truth
   box **of its own class** it overlaps most (the lowest index among equal IoUs) → ``[c, c]``.
   These are the true positives COCO/VOC matching would count at this IoU and score threshold.
2. *Then across classes*: each prediction left unmatched, in score order, takes the still
   unmatched box **of any class** it overlaps most → ``[gt class, predicted class]``.  A
   correct-class prediction thus always wins its object over a higher-scored wrong-class one,
   and a class confusion is only recorded for an object no correct prediction found.  (After
   step 1, every box a prediction can take here has another class.)
3. Predictions still unmatched → background row; boxes still unmatched → background column.
   A duplicate of an already detected object is therefore one true positive plus background
   predictions, never several true positives.

Ground-truth boxes flagged as ignored (``ignore_flag``/crowd) are not counted anywhere, and a
prediction left unmatched after step 2 that overlaps an ignored box is dropped rather than
counted as a background prediction (COCO does not penalise it either).

:func:`normalize_rows` gives the per-row view: row ``c`` is the share of class-``c`` objects
detected as each class or missed (its diagonal is the recall); the background row is how the
false positives spread over the predicted classes.  Rows with no entry are NaN, not 0/0 noise.

Only numpy is needed here (the lean core: no mmcv/mmdet import); the CLI that reads results,
datasets and draws the heatmap is ``tools/analysis/confusion_matrix.py``.
"""
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    'box_iou', 'match_detections', 'image_confusion', 'detection_confusion_matrix',
    'normalize_rows', 'per_class_summary'
]

#: ``match_detections`` codes for a prediction that is not matched to a counted box
UNMATCHED = -1  # a background prediction
IGNORED = -2  # dropped: below the score threshold, or overlapping only an ignored box


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``x1y1x2y2`` boxes.

    Args:
        boxes1: ``(N, 4)``.
        boxes2: ``(M, 4)``.

    Returns:
        ``(N, M)`` float64; 0 where the union is empty (degenerate boxes).
    """
    a = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _check_image(num_classes: int, pred_bboxes: np.ndarray, pred_scores: np.ndarray,
                 pred_labels: np.ndarray, gt_bboxes: np.ndarray, gt_labels: np.ndarray,
                 gt_ignore: np.ndarray, where: str) -> None:
    if not (len(pred_bboxes) == len(pred_scores) == len(pred_labels)):
        raise ValueError(f'{where}: {len(pred_bboxes)} predicted boxes, {len(pred_scores)} '
                         f'scores and {len(pred_labels)} labels')
    if not (len(gt_bboxes) == len(gt_labels) == len(gt_ignore)):
        raise ValueError(f'{where}: {len(gt_bboxes)} ground-truth boxes, {len(gt_labels)} '
                         f'labels and {len(gt_ignore)} ignore flags')
    for name, labels in (('predicted', pred_labels), ('ground-truth', gt_labels)):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise ValueError(f'{where}: {name} label {int(bad[0])} outside [0, {num_classes}) '
                             f'({num_classes} classes)')


def match_detections(pred_bboxes: np.ndarray,
                     pred_scores: np.ndarray,
                     pred_labels: np.ndarray,
                     gt_bboxes: np.ndarray,
                     gt_labels: np.ndarray,
                     gt_ignore: Optional[np.ndarray] = None,
                     score_thr: float = 0.3,
                     iou_thr: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of one image's predictions to its ground truth (module docstring).

    Args:
        pred_bboxes: ``(N, 4)`` x1y1x2y2.
        pred_scores: ``(N,)``.
        pred_labels: ``(N,)`` class indices.
        gt_bboxes: ``(M, 4)`` x1y1x2y2, in the coordinates of the predictions.
        gt_labels: ``(M,)`` class indices.
        gt_ignore: ``(M,)`` bool, boxes to leave out (crowd / ``ignore_flag``); none if ``None``.
        score_thr: predictions with ``score < score_thr`` are dropped.
        iou_thr: least IoU of a match.

    Returns:
        ``pred_match`` ``(N,)`` int64: the index of the matched ground-truth box,
        :data:`UNMATCHED` (-1, a background prediction) or :data:`IGNORED` (-2, dropped); and
        ``gt_match`` ``(M,)`` int64: the index of the matching prediction, or -1 (missed or
        ignored).
    """
    pred_bboxes = np.asarray(pred_bboxes, dtype=np.float64).reshape(-1, 4)
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    pred_labels = np.asarray(pred_labels, dtype=np.int64).reshape(-1)
    gt_bboxes = np.asarray(gt_bboxes, dtype=np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    ignore = (
        np.zeros(len(gt_labels), dtype=bool) if gt_ignore is None else np.asarray(
            gt_ignore, dtype=bool).reshape(-1))

    pred_match = np.full(len(pred_labels), IGNORED, dtype=np.int64)
    gt_match = np.full(len(gt_labels), -1, dtype=np.int64)
    kept = np.flatnonzero(pred_scores >= score_thr)
    order = kept[np.argsort(-pred_scores[kept], kind='stable')]
    pred_match[order] = UNMATCHED
    ious = box_iou(pred_bboxes, gt_bboxes)  # (N, M)
    overlaps = ious >= iou_thr

    for same_class in (True, False):
        for i in order:
            if pred_match[i] != UNMATCHED:
                continue
            free = overlaps[i] & (gt_match < 0) & ~ignore
            if same_class:
                free &= gt_labels == pred_labels[i]
            if not free.any():
                continue
            j = int(np.argmax(np.where(free, ious[i], -1.0)))  # first of equal IoUs
            pred_match[i], gt_match[j] = j, i
    # A leftover prediction on an ignored box (crowd) is neither matched nor a false positive.
    if ignore.any():
        on_ignored = (pred_match == UNMATCHED) & (overlaps & ignore[None, :]).any(axis=1)
        pred_match[on_ignored] = IGNORED
    return pred_match, gt_match


def image_confusion(num_classes: int,
                    pred_bboxes: np.ndarray,
                    pred_scores: np.ndarray,
                    pred_labels: np.ndarray,
                    gt_bboxes: np.ndarray,
                    gt_labels: np.ndarray,
                    gt_ignore: Optional[np.ndarray] = None,
                    score_thr: float = 0.3,
                    iou_thr: float = 0.5,
                    where: str = 'image') -> np.ndarray:
    """The ``(C + 1, C + 1)`` int64 confusion counts of one image (arguments as
    :func:`match_detections`; ``where`` names the image in errors)."""
    pred_bboxes = np.asarray(pred_bboxes, dtype=np.float64).reshape(-1, 4)
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    pred_labels = np.asarray(pred_labels, dtype=np.int64).reshape(-1)
    gt_bboxes = np.asarray(gt_bboxes, dtype=np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    ignore = (
        np.zeros(len(gt_labels), dtype=bool) if gt_ignore is None else np.asarray(
            gt_ignore, dtype=bool).reshape(-1))
    _check_image(num_classes, pred_bboxes, pred_scores, pred_labels, gt_bboxes, gt_labels, ignore,
                 where)
    pred_match, gt_match = match_detections(pred_bboxes, pred_scores, pred_labels, gt_bboxes,
                                            gt_labels, ignore, score_thr, iou_thr)
    bg = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    matched = pred_match >= 0
    np.add.at(matrix, (gt_labels[pred_match[matched]], pred_labels[matched]), 1)
    np.add.at(matrix, (bg, pred_labels[pred_match == UNMATCHED]), 1)
    np.add.at(matrix, (gt_labels[(gt_match < 0) & ~ignore], bg), 1)
    return matrix


def detection_confusion_matrix(num_classes: int,
                               images: Iterable[Dict[str, np.ndarray]],
                               score_thr: float = 0.3,
                               iou_thr: float = 0.5) -> np.ndarray:
    """Sum of :func:`image_confusion` over images.

    Args:
        num_classes: ``C``.
        images: per image a dict with ``pred_bboxes`` ``(N, 4)``, ``pred_scores`` ``(N,)``,
            ``pred_labels`` ``(N,)``, ``gt_bboxes`` ``(M, 4)``, ``gt_labels`` ``(M,)``, and
            optionally ``gt_ignore`` ``(M,)`` and ``name`` (used in error messages).
        score_thr, iou_thr: as :func:`match_detections`.

    Returns:
        ``(C + 1, C + 1)`` int64 counts: rows ground truth, columns prediction, last row and
        column background (see the module docstring).
    """
    if num_classes < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    if not 0.0 < iou_thr <= 1.0:
        raise ValueError(f'iou_thr must lie in (0, 1], got {iou_thr}')
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for k, image in enumerate(images):
        matrix += image_confusion(
            num_classes,
            image['pred_bboxes'],
            image['pred_scores'],
            image['pred_labels'],
            image['gt_bboxes'],
            image['gt_labels'],
            image.get('gt_ignore'),
            score_thr=score_thr,
            iou_thr=iou_thr,
            where=str(image.get('name', f'image #{k}')))
    return matrix


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum, ``(C + 1, C + 1)`` float64; a row with no entry is NaN."""
    matrix = np.asarray(matrix, dtype=np.float64)
    sums = matrix.sum(axis=1, keepdims=True)
    out = np.full_like(matrix, np.nan)
    np.divide(matrix, sums, out=out, where=sums > 0)
    return out


def per_class_summary(matrix: np.ndarray, classes: Sequence[str]) -> List[Dict[str, float]]:
    """Per class: ground-truth boxes, predictions, true positives, confusions with other
    classes, misses, background predictions, and recall / precision (NaN when undefined)."""
    matrix = np.asarray(matrix)
    c = len(classes)
    if matrix.shape != (c + 1, c + 1):
        raise ValueError(f'matrix of shape {matrix.shape} for {c} classes; expected '
                         f'{(c + 1, c + 1)}')
    rows = []
    for k, name in enumerate(classes):
        gts, preds, tp = int(matrix[k, :].sum()), int(matrix[:, k].sum()), int(matrix[k, k])
        rows.append(
            dict(
                name=str(name),
                gt=gts,
                pred=preds,
                tp=tp,
                gt_as_other_class=int(matrix[k, :c].sum()) - tp,
                missed=int(matrix[k, c]),
                pred_on_other_class=int(matrix[:c, k].sum()) - tp,
                pred_on_background=int(matrix[c, k]),
                recall=tp / gts if gts else float('nan'),
                precision=tp / preds if preds else float('nan')))
    return rows
