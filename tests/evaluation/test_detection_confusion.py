"""The detection confusion matrix (mmext/evaluation/detection_confusion.py).

Hand-built images with matrices worked out by hand: 1 class (a TP, an FP, an FN), 2 classes with
a class confusion (counted once, not also as a miss: mmdet #10631), the correct class winning its
object over a higher-scored wrong one, duplicates (one TP, the rest background predictions), one
prediction over two objects (matched once), the score threshold, ignored boxes; then random
images against the invariants (row sums = objects, column sums = kept predictions, diagonal =
COCO-style per-class greedy true positives).
"""
import math

import numpy as np
import pytest

from mmext.evaluation.detection_confusion import (IGNORED, UNMATCHED, box_iou,
                                                  detection_confusion_matrix, image_confusion,
                                                  match_detections, normalize_rows,
                                                  per_class_summary)

BOX_A = [0, 0, 10, 10]
BOX_B = [100, 100, 110, 110]
NOWHERE = [50, 50, 60, 60]


def test_box_iou_by_hand():
    ious = box_iou([[0, 0, 10, 10]],
                   [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 3]])
    assert ious.shape == (1, 4)
    np.testing.assert_allclose(ious[0], [1.0, 50 / 150, 0.0, 0.0])
    assert box_iou(np.zeros((0, 4)), [BOX_A]).shape == (0, 1)
    assert box_iou([BOX_A], np.zeros((0, 4))).shape == (1, 0)


def test_one_class_tp_fp_fn():
    """One class: a hit, a prediction on nothing, a missed object -> [[1, 1], [1, 0]]."""
    m = image_confusion(1, [BOX_A, NOWHERE], [0.9, 0.8], [0, 0], [BOX_A, BOX_B], [0, 0])
    np.testing.assert_array_equal(m, [[1, 1], [1, 0]])
    shares = normalize_rows(m)
    np.testing.assert_allclose(shares, [[0.5, 0.5], [1.0, 0.0]])
    summary = per_class_summary(m, ['thing'])[0]
    assert summary['gt'] == 2 and summary['pred'] == 2 and summary['tp'] == 1
    assert summary['recall'] == 0.5 and summary['precision'] == 0.5
    assert summary['missed'] == 1 and summary['pred_on_background'] == 1


def test_one_class_without_false_positive_has_an_undefined_background_row():
    """All predictions hit (mmdet #11361: a blank row, 0/0 warnings): the background row is
    NaN in the normalised view, not 0 and not an error."""
    m = image_confusion(1, [BOX_A], [0.9], [0], [BOX_A], [0])
    np.testing.assert_array_equal(m, [[1, 0], [0, 0]])
    shares = normalize_rows(m)
    assert shares[0].tolist() == [1.0, 0.0] and np.isnan(shares[1]).all()
    # nothing predicted, nothing to find
    np.testing.assert_array_equal(image_confusion(1, [], [], [], [], []), np.zeros((2, 2)))
    assert math.isnan(per_class_summary(np.zeros((2, 2)), ['x'])[0]['recall'])


def test_two_classes_confusion_counted_once():
    """A 'dog' predicted on a cat is one confusion [cat, dog], not also a missed cat."""
    cat, dog = 0, 1
    m = image_confusion(2, [BOX_A, BOX_B], [0.9, 0.7], [dog, dog], [BOX_A, BOX_B], [cat, dog])
    np.testing.assert_array_equal(m, [[0, 1, 0], [0, 1, 0], [0, 0, 0]])
    assert m[cat].sum() == 1  # one cat, one cell
    summary = per_class_summary(m, ['cat', 'dog'])
    assert summary[0]['gt_as_other_class'] == 1 and summary[0]['missed'] == 0
    assert summary[1]['pred'] == 2 and summary[1]['pred_on_other_class'] == 1


def test_correct_class_wins_over_higher_scored_wrong_class():
    cat, dog = 0, 1
    near = [0, 0, 10, 7]  # IoU 0.7 with BOX_A
    m = image_confusion(2, [BOX_A, near], [0.9, 0.5], [dog, cat], [BOX_A], [cat])
    # the cat prediction takes the cat; the dog prediction is left on background
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    pred_match, gt_match = match_detections([BOX_A, near], [0.9, 0.5], [dog, cat], [BOX_A], [cat])
    assert pred_match.tolist() == [UNMATCHED, 0] and gt_match.tolist() == [1]


def test_duplicates_count_one_true_positive():
    boxes = [BOX_A, [0, 0, 10, 9], [1, 0, 10, 10]]
    m = image_confusion(1, boxes, [0.6, 0.9, 0.7], [0, 0, 0], [BOX_A], [0])
    np.testing.assert_array_equal(m, [[1, 0], [2, 0]])
    pred_match, _ = match_detections(boxes, [0.6, 0.9, 0.7], [0, 0, 0], [BOX_A], [0])
    assert pred_match.tolist() == [UNMATCHED, 0, UNMATCHED]  # the highest score matches
    # two classes: the duplicates of a cat stay background predictions of their class
    m2 = image_confusion(2, boxes, [0.6, 0.9, 0.7], [0, 1, 1], [BOX_A], [0])
    np.testing.assert_array_equal(m2, [[1, 0, 0], [0, 0, 0], [0, 2, 0]])


def test_one_prediction_over_two_objects_matches_once():
    """The prediction takes the object it overlaps most; the other object is missed."""
    gt = [[0, 0, 10, 10], [0, 0, 10, 12]]
    pred = [[0, 0, 10, 11]]  # IoU 100/110 = 0.909 and 110/120 = 0.917
    pred_match, gt_match = match_detections(pred, [0.9], [0], gt, [0, 0])
    assert pred_match.tolist() == [1] and gt_match.tolist() == [-1, 0]
    np.testing.assert_array_equal(
        image_confusion(1, pred, [0.9], [0], gt, [0, 0]), [[1, 1], [0, 0]])


def test_score_threshold():
    args = ([BOX_A, NOWHERE], [0.25, 0.3], [0, 0], [BOX_A], [0])
    # 0.25 < 0.3: the hit is dropped, the object missed; 0.3 >= 0.3: kept
    np.testing.assert_array_equal(image_confusion(1, *args, score_thr=0.3), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(image_confusion(1, *args, score_thr=0.2), [[1, 0], [1, 0]])
    np.testing.assert_array_equal(image_confusion(1, *args, score_thr=0.5), [[0, 1], [0, 0]])
    pred_match, _ = match_detections(*args, score_thr=0.3)
    assert pred_match.tolist() == [IGNORED, UNMATCHED]


def test_iou_threshold():
    half = [5, 0, 15, 10]  # IoU 1/3 with BOX_A
    args = ([half], [0.9], [0], [BOX_A], [0])
    np.testing.assert_array_equal(image_confusion(1, *args, iou_thr=0.5), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(image_confusion(1, *args, iou_thr=0.3), [[1, 0], [0, 0]])


def test_ignored_boxes_are_not_counted():
    crowd = [200, 200, 260, 260]
    m = image_confusion(
        1, [BOX_A, crowd, NOWHERE], [0.9, 0.8, 0.7], [0, 0, 0], [BOX_A, crowd], [0, 0],
        gt_ignore=[False, True])
    # the crowd box is no object to find, and the prediction on it no false positive
    np.testing.assert_array_equal(m, [[1, 0], [1, 0]])


def test_labels_out_of_range_raise():
    with pytest.raises(ValueError, match='predicted label 2 outside'):
        image_confusion(2, [BOX_A], [0.9], [2], [BOX_A], [0], where='img.png')
    with pytest.raises(ValueError, match='img.png: ground-truth label -1'):
        image_confusion(2, [BOX_A], [0.9], [0], [BOX_A], [-1], where='img.png')
    with pytest.raises(ValueError, match='3 predicted boxes, 2 scores'):
        image_confusion(1, [BOX_A] * 3, [0.9, 0.8], [0, 0, 0], [], [])
    with pytest.raises(ValueError, match='num_classes'):
        detection_confusion_matrix(0, [])


def _greedy_true_positives(image, num_classes, score_thr, iou_thr):
    """Per class, COCO's matching at one IoU: predictions by decreasing score take the unmatched
    same-class object of highest IoU."""
    tps = np.zeros(num_classes, dtype=np.int64)
    for c in range(num_classes):
        keep = (image['pred_labels'] == c) & (image['pred_scores'] >= score_thr)
        boxes = image['pred_bboxes'][keep]
        scores = image['pred_scores'][keep]
        gts = image['gt_bboxes'][image['gt_labels'] == c]
        taken = np.zeros(len(gts), dtype=bool)
        for i in np.argsort(-scores, kind='stable'):
            best, best_j = iou_thr, -1
            for j in range(len(gts)):
                iou = box_iou(boxes[i:i + 1], gts[j:j + 1])[0, 0]
                if not taken[j] and iou >= best and (best_j < 0 or iou > best):
                    best, best_j = iou, j
            if best_j >= 0:
                taken[best_j] = True
                tps[c] += 1
    return tps


def _random_image(rng, num_classes):
    num_gt = int(rng.integers(0, 6))
    xy = rng.uniform(0, 80, size=(num_gt, 2))
    wh = rng.uniform(8, 30, size=(num_gt, 2))
    gt = np.concatenate([xy, xy + wh], axis=1)
    gt_labels = rng.integers(0, num_classes, size=num_gt)
    preds, labels = [], []
    for box, label in zip(gt, gt_labels):  # jittered copies, sometimes of another class
        for _ in range(int(rng.integers(0, 3))):
            preds.append(box + rng.normal(0, 2.5, size=4))
            labels.append(label if rng.random() < 0.7 else rng.integers(0, num_classes))
    for _ in range(int(rng.integers(0, 3))):  # predictions on nothing in particular
        xy = rng.uniform(0, 80, size=2)
        preds.append(np.concatenate([xy, xy + rng.uniform(8, 30, size=2)]))
        labels.append(rng.integers(0, num_classes))
    return dict(
        pred_bboxes=np.array(preds, dtype=np.float64).reshape(-1, 4),
        pred_scores=rng.uniform(0, 1, size=len(preds)),
        pred_labels=np.array(labels, dtype=np.int64),
        gt_bboxes=gt,
        gt_labels=gt_labels)


@pytest.mark.parametrize('num_classes', [1, 2, 4])
def test_random_images_keep_the_invariants(num_classes):
    rng = np.random.default_rng(num_classes)
    images = [_random_image(rng, num_classes) for _ in range(40)]
    score_thr, iou_thr = 0.3, 0.5
    m = detection_confusion_matrix(num_classes, images, score_thr, iou_thr)
    assert m.shape == (num_classes + 1, num_classes + 1) and m.dtype == np.int64
    gt_labels = np.concatenate([im['gt_labels'] for im in images])
    kept = np.concatenate([im['pred_labels'][im['pred_scores'] >= score_thr] for im in images])
    bg = num_classes
    # every object in exactly one cell of its row, every kept prediction in one cell of its
    # column, nothing in the background/background corner
    np.testing.assert_array_equal(m[:bg].sum(1), np.bincount(gt_labels, minlength=num_classes))
    np.testing.assert_array_equal(m[:, :bg].sum(0), np.bincount(kept, minlength=num_classes))
    assert m[bg, bg] == 0
    tps = sum(_greedy_true_positives(im, num_classes, score_thr, iou_thr) for im in images)
    np.testing.assert_array_equal(np.diag(m)[:bg], tps)
    assert m[:bg, :bg].sum() > np.trace(m[:bg, :bg]) or num_classes == 1  # confusions exist
    assert m[bg, :bg].sum() > 0 and m[:bg, bg].sum() > 0  # and both backgrounds are used
    shares = normalize_rows(m)
    np.testing.assert_allclose(np.nansum(shares, axis=1)[m.sum(1) > 0], 1.0)
