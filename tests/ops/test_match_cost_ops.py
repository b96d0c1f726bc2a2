"""Fused pairwise box costs: bit-identical to the torch expressions they replace."""
import pytest
import torch

from mmext.models.task_modules.assigners.match_costs.iou_cost import pairwise_iou
from mmext.ops import (fused_match_costs, fused_match_costs_usable, pairwise_box_iou,
                       pairwise_box_l1)
from mmext.utils.ext_loader import ext_built

pytestmark = pytest.mark.skipif(not ext_built(), reason='mmext was built without ops')


def _boxes(g: torch.Generator, *shape: int, dtype=torch.float32) -> torch.Tensor:
    xy = torch.rand(*shape, 2, generator=g, dtype=dtype) * 100
    wh = torch.rand(*shape, 2, generator=g, dtype=dtype) * 60
    wh[..., :3, :] = 0  # degenerate (zero-area) boxes
    return torch.cat([xy, xy + wh], -1)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('mode', ['iou', 'iof', 'giou'])
def test_iou_bit_identical_to_torch(mode, dtype):
    g = torch.Generator().manual_seed(0)
    pred, gt = _boxes(g, 3, 37, dtype=dtype), _boxes(g, 3, 11, dtype=dtype)
    pred[0, 5] = gt[0, 4]  # identical boxes: IoU exactly 1
    expected = pairwise_iou(pred, gt, mode).neg_()
    got = pairwise_box_iou(pred, gt, mode, 1e-6, scale=-1.)
    assert got.dtype == dtype and torch.equal(got, expected)


def test_l1_bit_identical_to_torch():
    g = torch.Generator().manual_seed(1)
    pred, gt = torch.rand(4, 29, 4, generator=g), torch.rand(4, 7, 4, generator=g)
    expected = (pred[:, :, None, :] - gt[:, None, :, :]).abs()
    expected = ((expected[..., 0] + expected[..., 1]) + expected[..., 2]) + expected[..., 3]
    assert torch.equal(pairwise_box_l1(pred, gt), expected)
    assert torch.equal(pairwise_box_l1(pred, gt, scale=5.), expected * 5)


def test_nan_propagates_so_the_assigner_can_name_it():
    g = torch.Generator().manual_seed(2)
    pred, gt = _boxes(g, 1, 5), _boxes(g, 1, 4)
    pred[0, 2, 1] = float('nan')
    for mode in ('iou', 'iof', 'giou'):
        out = pairwise_box_iou(pred, gt, mode)
        assert out[0, 2].isnan().all() and out[0, [0, 1, 3, 4]].isfinite().all()
    assert pairwise_box_l1(pred, gt)[0, 2].isnan().all()


def test_empty_and_mismatched_inputs():
    assert pairwise_box_iou(torch.zeros(2, 0, 4), torch.zeros(2, 3, 4)).shape == (2, 0, 3)
    assert pairwise_box_l1(torch.zeros(2, 5, 4), torch.zeros(2, 0, 4)).shape == (2, 5, 0)
    with pytest.raises(RuntimeError, match='4 coordinates'):
        pairwise_box_iou(torch.zeros(1, 2, 5), torch.zeros(1, 2, 5))
    with pytest.raises(RuntimeError, match='same batch size'):
        pairwise_box_l1(torch.zeros(1, 2, 4), torch.zeros(2, 2, 4))
    with pytest.raises(RuntimeError, match='share a dtype'):
        pairwise_box_l1(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match='floating-point'):
        pairwise_box_l1(torch.zeros(1, 2, 4, dtype=torch.long), torch.zeros(1, 2, 4).long())


def test_usable_only_where_the_kernels_apply():
    x = torch.zeros(1, 2, 4)
    assert fused_match_costs_usable(x, x)
    assert not fused_match_costs_usable(x.half(), x.half())
    assert not fused_match_costs_usable(x.requires_grad_(), x)
    with fused_match_costs(False):
        assert not fused_match_costs_usable(torch.zeros(1, 2, 4))
    assert fused_match_costs_usable(torch.zeros(1, 2, 4))
