"""Pairwise box cost ops: the fused kernels are bit-identical to the torch expressions they
replace, and each op picks its backend itself."""
import importlib

import pytest
import torch

from mmext.ops import fused_match_costs, fused_match_costs_usable, pairwise_box_iou, pairwise_box_l1
from mmext.utils.ext_loader import ext_built, load_ext

needs_ext = pytest.mark.skipif(not ext_built(), reason='mmext was built without ops')
match_cost_module = importlib.import_module('mmext.ops.match_cost')


def _boxes(g: torch.Generator, *shape: int, dtype=torch.float32) -> torch.Tensor:
    xy = torch.rand(*shape, 2, generator=g, dtype=dtype) * 100
    wh = torch.rand(*shape, 2, generator=g, dtype=dtype) * 60
    wh[..., :3, :] = 0  # degenerate (zero-area) boxes
    return torch.cat([xy, xy + wh], -1)


@needs_ext
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('mode', ['iou', 'iof', 'giou'])
def test_iou_bit_identical_to_torch(mode, dtype):
    g = torch.Generator().manual_seed(0)
    pred, gt = _boxes(g, 3, 37, dtype=dtype), _boxes(g, 3, 11, dtype=dtype)
    pred[0, 5] = gt[0, 4]  # identical boxes: IoU exactly 1
    expected = match_cost_module._box_iou_torch(pred, gt, mode, 1e-6).neg_()
    with fused_match_costs(False):  # the op's torch backend
        assert torch.equal(pairwise_box_iou(pred, gt, mode, 1e-6, scale=-1.), expected)
    assert fused_match_costs_usable(pred, gt)
    got = pairwise_box_iou(pred, gt, mode, 1e-6, scale=-1.)
    assert got.dtype == dtype and torch.equal(got, expected)


@pytest.mark.parametrize('fused', [pytest.param(True, marks=needs_ext), False])
def test_l1_bit_identical_to_torch(fused):
    g = torch.Generator().manual_seed(1)
    pred, gt = torch.rand(4, 29, 4, generator=g), torch.rand(4, 7, 4, generator=g)
    expected = (pred[:, :, None, :] - gt[:, None, :, :]).abs()
    expected = ((expected[..., 0] + expected[..., 1]) + expected[..., 2]) + expected[..., 3]
    with fused_match_costs(fused):
        assert fused_match_costs_usable(pred, gt) == fused
        assert torch.equal(pairwise_box_l1(pred, gt), expected)
        assert torch.equal(pairwise_box_l1(pred, gt, scale=5.), expected * 5)


def test_ops_dispatch_to_torch_where_the_kernels_do_not_apply(monkeypatch):
    """Half precision and inputs that need gradients take the torch expressions (the kernels
    are never called), on their own: the callers do not choose."""
    monkeypatch.setattr(match_cost_module, '_ext', lambda: pytest.fail('kernel called'))
    g = torch.Generator().manual_seed(3)
    pred, gt = _boxes(g, 2, 9), _boxes(g, 2, 4)
    half = pairwise_box_iou(pred.half(), gt.half(), 'iou')
    assert half.dtype == torch.float16
    p = pred.clone().requires_grad_()
    iou = pairwise_box_iou(p, gt, 'giou', scale=-2.)
    l1 = pairwise_box_l1(p, gt, scale=3.)
    (iou.sum() + l1.sum()).backward()
    assert p.grad is not None and p.grad.isfinite().all()
    torch.testing.assert_close(iou.detach(),
                               match_cost_module._box_iou_torch(pred, gt, 'giou', 1e-6) * -2.)
    with pytest.raises(ValueError, match='mode'):
        pairwise_box_iou(pred, gt, 'diou')


@needs_ext
def test_nan_propagates_so_the_assigner_can_name_it():
    g = torch.Generator().manual_seed(2)
    pred, gt = _boxes(g, 1, 5), _boxes(g, 1, 4)
    pred[0, 2, 1] = float('nan')
    for mode in ('iou', 'iof', 'giou'):
        out = pairwise_box_iou(pred, gt, mode)
        assert out[0, 2].isnan().all() and out[0, [0, 1, 3, 4]].isfinite().all()
    assert pairwise_box_l1(pred, gt)[0, 2].isnan().all()


@needs_ext
def test_empty_and_mismatched_inputs():
    assert pairwise_box_iou(torch.zeros(2, 0, 4), torch.zeros(2, 3, 4)).shape == (2, 0, 3)
    assert pairwise_box_l1(torch.zeros(2, 5, 4), torch.zeros(2, 0, 4)).shape == (2, 5, 0)
    with pytest.raises(RuntimeError, match='4 coordinates'):
        pairwise_box_iou(torch.zeros(1, 2, 5), torch.zeros(1, 2, 5))
    with pytest.raises(RuntimeError, match='same batch size'):
        pairwise_box_l1(torch.zeros(1, 2, 4), torch.zeros(2, 2, 4))
    with pytest.raises(RuntimeError, match='share a dtype'):
        pairwise_box_l1(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match='floating-point'):  # the op would take torch here
        load_ext('_ext', ['pairwise_box_l1']).pairwise_box_l1(
            torch.zeros(1, 2, 4, dtype=torch.long),
            torch.zeros(1, 2, 4).long(), 1.)


@needs_ext
def test_usable_only_where_the_kernels_apply():
    x = torch.zeros(1, 2, 4)
    assert fused_match_costs_usable(x, x)
    assert not fused_match_costs_usable(x.half(), x.half())
    assert not fused_match_costs_usable(x.requires_grad_(), x)
    with fused_match_costs(False):
        assert not fused_match_costs_usable(torch.zeros(1, 2, 4))
    assert fused_match_costs_usable(torch.zeros(1, 2, 4))
