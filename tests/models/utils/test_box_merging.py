"""Merging detections of overlapping windows: NMS and weighted box fusion."""
import pytest
import torch
from torchvision.ops import box_iou

from mmext.models.utils.box_merging import merge_detections, weighted_box_fusion


def test_wbf_fuses_overlapping_boxes_of_one_class():
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.], [0., 0., 10., 10.],
                          [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.6, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1, 0])
    out_boxes, out_scores, out_labels = weighted_box_fusion(boxes, scores, labels, 0.55)
    # by decreasing score: class 1 alone (0.8), the fused pair (mean 0.75), the far box (0.7)
    assert out_labels.tolist() == [1, 0, 0]
    assert out_scores.tolist() == pytest.approx([0.8, 0.75, 0.7])
    expected = (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5  # score-weighted mean
    assert torch.allclose(out_boxes[1], expected)
    assert torch.equal(out_boxes[0], boxes[2]) and torch.equal(out_boxes[2], boxes[3])
    _, max_scores, max_labels = weighted_box_fusion(boxes, scores, labels, 0.55, conf_type='max')
    assert max_scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert max_labels.tolist() == [0, 1, 0]


def test_wbf_compares_with_the_fused_box():
    """A box joins the cluster whose *fused* box it overlaps most (not the first member)."""
    boxes = torch.tensor([[0., 0., 10., 10.], [3., 0., 13., 10.], [5., 0., 15., 10.]])
    scores = torch.tensor([0.9, 0.9, 0.8])
    labels = torch.zeros(3, dtype=torch.long)
    iou_first = box_iou(boxes[2:], boxes[:1])[0, 0]
    fused01 = (boxes[0] + boxes[1]) / 2
    iou_fused = box_iou(boxes[2:], fused01[None])[0, 0]
    assert iou_first < 0.4 < iou_fused  # the case this test is about
    out_boxes, out_scores, _ = weighted_box_fusion(boxes, scores, labels, 0.4)
    assert len(out_boxes) == 1
    assert torch.allclose(out_boxes[0], (scores[:, None] * boxes).sum(0) / scores.sum())
    assert out_scores.item() == pytest.approx(scores.mean().item())


def test_merge_detections_methods():
    boxes = torch.tensor([[0., 0., 10., 10.], [0.5, 0., 10.5, 10.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.5, 0.9, 0.7])
    labels = torch.tensor([0, 0, 0])
    b, s, _ = merge_detections(boxes, scores, labels, dict(type='nms', iou_threshold=0.5))
    assert s.tolist() == pytest.approx([0.9, 0.7]) and torch.equal(b[0], boxes[1])
    b, s, _ = merge_detections(boxes, scores, labels, dict(type='none'))
    assert s.tolist() == pytest.approx([0.9, 0.7, 0.5])
    b, s, _ = merge_detections(boxes, scores, labels, dict(type='wbf', iou_threshold=0.5))
    assert len(b) == 2 and s[0].item() == pytest.approx(0.7)  # mean of 0.9 and 0.5
    assert merge_detections(boxes, scores, labels)[0].shape == (2, 4)  # default: NMS at 0.5
    with pytest.raises(ValueError, match="'nms', 'wbf' or 'none'"):
        merge_detections(boxes, scores, labels, dict(type='soft'))
    with pytest.raises(ValueError, match='iou_threshold only'):
        merge_detections(boxes, scores, labels, dict(type='nms', conf_type='avg'))
    with pytest.raises(ValueError, match='conf_type'):
        merge_detections(boxes, scores, labels, dict(type='wbf', conf_type='sum'))
