"""BoxPrecisionRecall (DeepForest's protocol) on boxes whose matches are worked out by hand."""
import math

import numpy as np
import pytest
import torch

from mmext.evaluation.metrics.box_precision_recall import (BoxPrecisionRecall, box_iou_matrix,
                                                           match_boxes)


def _sample(gt, pred, scores, instances=None):
    sample = dict(
        pred_instances=dict(
            bboxes=torch.tensor(pred, dtype=torch.float32).reshape(-1, 4),
            scores=torch.tensor(scores, dtype=torch.float32),
            labels=torch.zeros(len(scores), dtype=torch.long)))
    if instances is not None:
        sample['instances'] = instances
    else:
        sample['gt_instances'] = dict(bboxes=torch.tensor(gt, dtype=torch.float32).reshape(-1, 4))
    return sample


def test_iou_matrix_by_hand():
    inter, iou = box_iou_matrix([[0, 0, 10, 10]], [[5, 0, 15, 10], [0, 0, 10, 4], [20, 20, 30, 30]])
    assert inter.tolist() == [[50, 40, 0]]
    assert iou[0].tolist() == pytest.approx([50 / 150, 40 / 100, 0])


def test_matching_maximises_total_intersection_not_greedy_iou():
    # g0 = [0, 10], g1 = [10, 20]; r0 = [2, 12] (score order first) overlaps g0 by 80 and g1 by
    # 20; r1 = [0, 9] overlaps g0 by 90.  A greedy match by score would pair r0-g0 (IoU 0.67);
    # the assignment of maximal intersection pairs r0-g1 (20) and r1-g0 (90): 110 > 80 + 0.
    gt = [[0, 0, 10, 10], [10, 0, 20, 10]]
    pred = [[2, 0, 12, 10], [0, 0, 9, 10]]
    assert match_boxes(gt, pred, 0.4).tolist() == [[0, 1]]  # r0-g1 has IoU 20/180: no match
    assert match_boxes(gt, pred, 0.1).tolist() == [[0, 1], [1, 0]]  # 20/180 = 0.111 > 0.1


def test_iou_must_be_strictly_above_the_threshold():
    gt, pred = [[0, 0, 10, 10]], [[0, 0, 10, 4]]  # IoU exactly 0.4
    assert len(match_boxes(gt, pred, 0.4)) == 0
    assert len(match_boxes(gt, pred, 0.39)) == 1
    assert match_boxes(np.zeros((0, 4)), pred).shape == (0, 2)
    assert match_boxes(gt, np.zeros((0, 4))).shape == (0, 2)


def test_metric_per_image_means_and_pooled_values_by_hand():
    samples = [
        # 1: two trees found (one exact, one IoU 90/110), a far box and a duplicate of IoU 0.4
        _sample([[0, 0, 10, 10], [20, 0, 30, 10]],
                [[0, 0, 10, 10], [21, 0, 31, 10], [50, 50, 60, 60], [0, 0, 10, 4]],
                [0.9, 0.8, 0.7, 0.6]),  # R 2/2, P 2/4
        # 2: the exact box scores below score_thr and is dropped; the rest has IoU 0.4
        _sample([[0, 0, 10, 10]], [[0, 0, 10, 10], [0, 0, 10, 4]], [0.05, 0.5]),  # R 0, P 0/1
        # 3: the Hungarian case above
        _sample([[0, 0, 10, 10], [10, 0, 20, 10]], [[2, 0, 12, 10], [0, 0, 9, 10]],
                [0.9, 0.8]),  # R 1/2, P 1/2
        # 4: ground truth from the 'instances' metainfo (the ignored box does not count), no
        # prediction: recall 0, no precision
        _sample(
            None, [], [],
            instances=[
                dict(bbox=[0, 0, 10, 10], bbox_label=0, ignore_flag=0),
                dict(bbox=[50, 50, 60, 60], bbox_label=0, ignore_flag=1)
            ]),
        # 5: no ground truth: left out of the means, its predictions count in the pooled values
        _sample([], [[0, 0, 5, 5], [5, 5, 9, 9]], [0.3, 0.2]),
    ]
    metric = BoxPrecisionRecall()
    metric.process(None, samples)
    res = metric.compute_metrics(metric.results)
    assert res['box_recall'] == pytest.approx((1 + 0 + 0.5 + 0) / 4)
    assert res['box_precision'] == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert (res['tp'], res['num_gt'], res['num_pred']) == (3, 6, 9)
    assert res['box_recall_pooled'] == pytest.approx(3 / 6)
    assert res['box_precision_pooled'] == pytest.approx(3 / 9)


def test_metric_without_predictions_or_ground_truth():
    metric = BoxPrecisionRecall()
    metric.process(None, [_sample([], [], [])])
    res = metric.compute_metrics(metric.results)
    assert math.isnan(res['box_recall']) and math.isnan(res['box_precision'])
    with pytest.raises(ValueError, match='iou_threshold'):
        BoxPrecisionRecall(iou_threshold=1.5)
    with pytest.raises(KeyError, match='meta_keys'):
        metric.process(None,
                       [dict(pred_instances=dict(bboxes=torch.zeros(0, 4), scores=torch.zeros(0)))])
