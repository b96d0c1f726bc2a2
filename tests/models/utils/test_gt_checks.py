"""raise_on_nonfinite_gt_boxes: silent on finite boxes, names the image otherwise."""
import pytest
import torch

from mmext.models.utils import raise_on_nonfinite_gt_boxes


def test_finite_and_empty_batches_pass():
    raise_on_nonfinite_gt_boxes([], [], 'Head')
    raise_on_nonfinite_gt_boxes([torch.zeros(0, 4), torch.zeros(0, 4)], None, 'Head')
    raise_on_nonfinite_gt_boxes([torch.rand(3, 4) * 1e30, torch.zeros(0, 4)], [{}, {}], 'Head')


def test_names_every_bad_image():
    boxes = [torch.rand(2, 4), torch.rand(3, 4), torch.rand(1, 4)]
    boxes[0][1, 3] = float('-inf')
    boxes[2][0, 0] = float('nan')
    metas = [dict(img_path='a.jpg'), dict(img_id=5), dict(img_id=7)]
    with pytest.raises(ValueError) as info:
        raise_on_nonfinite_gt_boxes(boxes, metas, 'Head')
    msg = str(info.value)
    assert msg.startswith('Head: ground-truth boxes with NaN or infinite coordinates in image 0 '
                          "of the batch (img_path='a.jpg'): 1 of 2 box(es)")
    assert 'image 2 of the batch (img_id=7): 1 of 1 box(es), e.g. [[nan' in msg
    assert 'image 1' not in msg


def test_without_metas():
    with pytest.raises(ValueError, match=r'in image 0 of the batch: 1 of 1 box'):
        raise_on_nonfinite_gt_boxes([torch.tensor([[0., 0., float('inf'), 1.]])], None, 'Head')
