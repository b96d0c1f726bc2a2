"""Fused LayerNorm against torch.nn.functional.layer_norm (values and gradients)."""
import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from mmext.ops import FusedLayerNorm, fused_layer_norm
from mmext.utils.ext_loader import ext_available, ext_built, load_ext

pytestmark = pytest.mark.skipif(not ext_built(), reason='mmext was built without ops')

SIZES = [1, 3, 7, 1023, 1024, 4097, 8192]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def _reference(x, w, b, eps, residual=None, pre_bias=None):
    """Unfused maths in float64, rounded like the unfused op would round the pre-norm sum."""
    s = x if pre_bias is None else x + pre_bias
    s = s if residual is None else s + residual
    y = F.layer_norm(s.double(), (x.shape[-1], ), None if w is None else w.double(),
                     None if b is None else b.double(), eps)
    return y, s


def _inputs(m, n, dtype, seed=0, device='cpu'):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, n, generator=g, dtype=torch.float64) * 2 + 0.5
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    b = torch.randn(n, generator=g, dtype=torch.float64)
    return [t.to(device, dtype) for t in (x, w, b)]


def test_extension_is_current():
    assert ext_available('_ext', ('layer_norm_fwd', 'layer_norm_bwd'))


@pytest.mark.parametrize('n', SIZES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_forward_matches_torch(n, dtype):
    x, w, b = _inputs(5, n, dtype)
    y = fused_layer_norm(x, n, w, b, 1e-5)
    ref, _ = _reference(x, w, b, 1e-5)
    assert y.dtype == dtype and y.shape == x.shape
    # fp32: against float64 maths; half types: within their own rounding of the output.
    assert torch.allclose(y.double(), ref, atol=TOL[dtype], rtol=TOL[dtype])
    if dtype == torch.float32:
        assert torch.allclose(y, F.layer_norm(x, (n, ), w, b, 1e-5), atol=1e-5)


@pytest.mark.parametrize('n', [1, 7, 1024, 4097])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_backward_matches_torch(n, dtype):
    x, w, b = _inputs(6, n, dtype, seed=1)
    dy = torch.randn(6, n, dtype=torch.float64).to(dtype)
    ours = [t.clone().requires_grad_() for t in (x, w, b)]
    theirs = [t.clone().double().requires_grad_() for t in (x, w, b)]
    fused_layer_norm(ours[0], n, ours[1], ours[2]).backward(dy)
    F.layer_norm(theirs[0], (n, ), theirs[1], theirs[2]).backward(dy.double())
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    for a, r in zip(ours, theirs):
        assert torch.allclose(a.grad.double(), r.grad, atol=tol, rtol=tol)


def test_gradcheck_float64_with_residual_and_bias():
    g = torch.Generator().manual_seed(2)
    args = [
        torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
        for s in [(4, 9), (9, ), (9, ), (4, 9), (9, )]
    ]

    def fn(x, w, b, r, pb):
        y, s = fused_layer_norm(x, 9, w, b, 1e-5, residual=r, pre_bias=pb, return_prenorm=True)
        return y, s * 1.5  # both outputs carry gradient

    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradcheck(lambda x: fused_layer_norm(x, 9), args[:1])


@pytest.mark.parametrize('affine', ['weight', 'bias'])
def test_gradcheck_weight_or_bias_alone(affine):
    """Either affine tensor may be absent; the other still gets its gradient."""
    g = torch.Generator().manual_seed(3)
    x, p = (
        torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
        for s in [(5, 7), (7, )])
    if affine == 'weight':
        fn = (lambda x, w: fused_layer_norm(x, 7, w, None))
    else:
        fn = (lambda x, b: fused_layer_norm(x, 7, None, b))
    assert torch.autograd.gradcheck(fn, (x, p))


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.cuda)])
@pytest.mark.parametrize('with_weight', [True, False])
def test_backward_op_reduces_parameter_grads_on_request(device, with_weight):
    """``param_grads`` alone decides whether the op reduces dweight = sum(dy * xhat) and
    dbias = sum(dy): a bias without a weight gets its gradient from the kernel too."""
    ext = load_ext('_ext', ('layer_norm_fwd', 'layer_norm_bwd'))
    x, w, _ = _inputs(33, 19, torch.float64, device=device)
    w = w if with_weight else None
    dy = torch.randn_like(x)
    _, mean, rstd, _ = ext.layer_norm_fwd(x, None, None, w, None, 1e-5, False)
    xhat = F.layer_norm(x, (19, ), eps=1e-5)
    dx, dweight, dbias = ext.layer_norm_bwd(dy, x, mean, rstd, w, None, True)
    assert torch.allclose(dweight, (dy * xhat).sum(0), atol=1e-10)
    assert torch.allclose(dbias, dy.sum(0), atol=1e-10)
    dx_only = ext.layer_norm_bwd(dy, x, mean, rstd, w, None, False)
    assert dx_only[1] is None and dx_only[2] is None
    assert torch.equal(dx_only[0], dx)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_residual_and_bias_fused(dtype):
    x, w, b = _inputs(8, 768, dtype, seed=3)
    r = torch.randn(8, 768).to(dtype)
    pb = torch.randn(768).to(dtype)
    y, s = fused_layer_norm(x, 768, w, b, 1e-6, residual=r, pre_bias=pb, return_prenorm=True)
    ref_y, ref_s = _reference(x, w, b, 1e-6, residual=r, pre_bias=pb)
    assert torch.equal(s, ref_s)  # the pre-norm sum is exactly the unfused (x + pb) + r
    assert torch.allclose(y.double(), ref_y, atol=TOL[dtype], rtol=TOL[dtype])


def test_non_contiguous_zero_rows_and_leading_dims():
    x = torch.randn(3, 16, 10).transpose(0, 1)  # [16, 3, 10], not contiguous
    w, b = torch.rand(10) + 0.5, torch.randn(10)
    assert torch.allclose(fused_layer_norm(x, 10, w, b), F.layer_norm(x, (10, ), w, b), atol=1e-5)
    empty = torch.randn(0, 10, requires_grad=True)
    out = fused_layer_norm(empty, 10, w, b)
    out.sum().backward()
    assert out.shape == (0, 10) and empty.grad.shape == (0, 10)


@pytest.mark.parametrize('scale,offset', [(1e-3, 1e4), (1e4, 0.), (1e-6, 0.)])
def test_extreme_variances_stay_accurate(scale, offset):
    """Large |mean| / tiny spread and huge spread: statistics accumulate in float64."""
    x = (torch.randn(4, 4097, dtype=torch.float64) * scale + offset).float()
    y = fused_layer_norm(x, 4097, eps=1e-12)
    ref = F.layer_norm(x.double(), (4097, ), eps=1e-12)
    assert torch.isfinite(y).all()
    assert torch.allclose(y.double(), ref, atol=2e-4)


def test_module_is_a_drop_in_layer_norm():
    ref = torch.nn.LayerNorm(32, eps=1e-6)
    torch.nn.init.normal_(ref.weight)
    torch.nn.init.normal_(ref.bias)
    name, layer = build_norm_layer(dict(type='mmext.FusedLN', eps=1e-6), 32)
    assert isinstance(layer, FusedLayerNorm) and name == 'ln'
    layer.load_state_dict(ref.state_dict())
    assert set(layer.state_dict()) == set(ref.state_dict())
    x = torch.randn(2, 5, 32)
    assert torch.allclose(layer(x), ref(x), atol=1e-5)
    y, s = layer(x, residual=x)
    assert torch.allclose(y, ref(x + x), atol=1e-5) and torch.equal(s, x + x)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match='normalized_shape'):
        fused_layer_norm(torch.randn(2, 5), 6)
    with pytest.raises(ValueError, match='residual shape'):
        fused_layer_norm(torch.randn(2, 5), 5, residual=torch.randn(1, 5))
    with pytest.raises(RuntimeError, match='weight must have shape'):
        fused_layer_norm(torch.randn(2, 5), 5, weight=torch.randn(4))


@pytest.mark.cuda
@pytest.mark.parametrize('n', SIZES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_torch(n, dtype):
    x, w, b = _inputs(64, n, dtype, device='cuda')
    r = torch.randn_like(x)
    xs = [t.clone().requires_grad_() for t in (x, w, b, r)]
    rs = [t.clone().double().requires_grad_() for t in (x, w, b, r)]
    y, s = fused_layer_norm(xs[0], n, xs[1], xs[2], residual=xs[3], return_prenorm=True)
    ref = F.layer_norm(rs[0] + rs[3], (n, ), rs[1], rs[2])
    assert torch.allclose(y.double(), ref, atol=TOL[dtype] * 4, rtol=TOL[dtype] * 4)
    dy = torch.randn_like(y)
    y.backward(dy)
    ref.backward(dy.double())
    tol = 1e-3 if dtype == torch.float32 else 1e-1
    for a, r_ in zip(xs, rs):
        assert torch.allclose(a.grad.double(), r_.grad, atol=tol, rtol=tol)


@pytest.mark.parametrize('backbone', ['VisionTransformer', 'SwinTransformer'])
def test_backbones_take_fused_layer_norm_from_norm_cfg(backbone):
    """norm_cfg=dict(type='mmext.FusedLN') swaps every LayerNorm; weights load unchanged."""
    from mmext.registry import MODELS
    cfg = dict(type=f'mmext.{backbone}', arch='tiny', img_size=32, patch_size=8) \
        if backbone == 'VisionTransformer' else dict(type='mmext.SwinTransformer', arch='tiny',
                                                     out_indices=(0, 1, 2, 3), pad_small_map=True)
    torch.manual_seed(0)
    ref = MODELS.build(dict(cfg, norm_cfg=dict(type='LN', eps=1e-6)))
    fused = MODELS.build(dict(cfg, norm_cfg=dict(type='mmext.FusedLN', eps=1e-6)))
    assert any(isinstance(m, FusedLayerNorm) for m in fused.modules())
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in fused.modules())
    fused.load_state_dict(ref.state_dict())
    ref.eval()
    fused.eval()
    x = torch.randn(2, 3, 64 if backbone == 'SwinTransformer' else 32,
                    64 if backbone == 'SwinTransformer' else 32)
    with torch.no_grad():
        for a, b in zip(ref(x), fused(x)):
            assert torch.allclose(a, b, atol=1e-4)
