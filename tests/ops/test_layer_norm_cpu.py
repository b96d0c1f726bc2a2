"""CPU kernels of the fused LayerNorm: SIMD path against the scalar path and float64 maths.

The SIMD kernels keep the row statistics in float32 lanes with float64 accumulation across
blocks, shifted by the row's first element; these tests measure how far their mean/rstd are
from exact float64 statistics on hard rows, and check that the scalar fallback
(``MMEXT_LN_CPU_KERNEL=scalar``) and the SIMD kernels agree.
"""
import pytest
import torch
import torch.nn.functional as F

from mmext.ops import fused_layer_norm
from mmext.utils.ext_loader import ext_available, ext_built, load_ext

pytestmark = pytest.mark.skipif(
    not ext_built() or not ext_available('_ext', ('layer_norm_fwd', 'layer_norm_bwd')),
    reason='mmext was built without ops')

HALF_TYPES = [torch.float32, torch.float16, torch.bfloat16]


def _ext():
    return load_ext('_ext', ('layer_norm_fwd', 'layer_norm_bwd'))


def _exact_moments(s: torch.Tensor):
    s64 = s.double()
    mean = s64.mean(1)
    var = ((s64 - mean[:, None])**2).mean(1)
    return mean, var


def _hard_rows(n: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows where a naive float32 mean/variance loses most of its digits."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, n, generator=g, dtype=torch.float64)
    rows = [
        base[0] * 1e-3 + 1e4,  # |mean| >> std
        base[1] * 1e-2 - 3e3,
        base[2] * 1e4,  # huge spread
        base[3] * 1e-6,  # tiny spread
        base[4].clone(),
        base[5] * 1e-3 + 1e4
    ]
    rows[4][0] = 1e4  # the shift (first element) is an outlier
    rows[5][0] = -1e4
    return torch.stack(rows).to(dtype)


@pytest.mark.parametrize('n', [1, 7, 8, 129, 1000, 4097])
@pytest.mark.parametrize('dtype', HALF_TYPES)
def test_statistics_error_against_float64(n, dtype):
    x = _hard_rows(n, dtype)
    _, mean, rstd, _ = _ext().layer_norm_fwd(x, None, None, None, None, 1e-12, False)
    ref_mean, ref_var = _exact_moments(x)
    std = ref_var.sqrt()
    # Mean error in units of the row's std, and relative rstd error: float32-rounding level.
    mean_err = torch.where(std > 0, (mean - ref_mean).abs() / std.clamp_min(1e-30), 0.)
    rstd_err = (rstd / (ref_var + 1e-12).rsqrt() - 1).abs()
    assert mean_err.max() < 1e-6, mean_err
    assert rstd_err.max() < 2e-6, rstd_err


@pytest.mark.parametrize('dtype', HALF_TYPES)
def test_simd_and_scalar_kernels_agree(dtype, monkeypatch):
    n = 1037  # not a multiple of the vector width nor of the block
    g = torch.Generator().manual_seed(4)
    x, r, dy = [(torch.randn(33, n, generator=g) * 3 + 1).to(dtype) for _ in range(3)]
    w, b, pb = [(torch.randn(n, generator=g) + 1).to(dtype) for _ in range(3)]

    def run():
        xs = [t.clone().requires_grad_() for t in (x, w, b, r, pb)]
        y, s = fused_layer_norm(
            xs[0], n, xs[1], xs[2], residual=xs[3], pre_bias=xs[4], return_prenorm=True)
        (y.float() * dy.float()).sum().backward()
        return [y, s] + [t.grad for t in xs]

    simd = run()
    monkeypatch.setenv('MMEXT_LN_CPU_KERNEL', 'scalar')
    scalar = run()
    assert torch.equal(simd[1], scalar[1])  # the pre-norm sum is rounded identically
    tol = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}[dtype]
    for a, b_ in zip(simd, scalar):
        assert a.dtype == b_.dtype
        scale = b_.double().abs().max().clamp_min(1)
        assert (a.double() - b_.double()).abs().max() <= tol * scale


@pytest.mark.parametrize('dtype', HALF_TYPES)
def test_prenorm_rounding_matches_unfused_ops(dtype):
    g = torch.Generator().manual_seed(5)
    x, r = [(torch.randn(9, 300, generator=g) * 4).to(dtype) for _ in range(2)]
    pb = torch.randn(300, generator=g).to(dtype)
    y, s = fused_layer_norm(x, 300, residual=r, pre_bias=pb, return_prenorm=True)
    ref_s = (x + pb) + r
    assert torch.equal(s, ref_s)
    ref_y = F.layer_norm(ref_s.double(), (300, ), eps=1e-5)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    assert torch.allclose(y.double(), ref_y, atol=tol, rtol=tol)


@pytest.mark.parametrize('dtype', HALF_TYPES)
def test_non_finite_rows_match_torch(dtype):
    x = torch.randn(4, 67).to(dtype)
    x[1, 5] = float('nan')
    x[2, 66] = float('inf')
    y = fused_layer_norm(x, 67)
    ref = F.layer_norm(x.float(), (67, ))
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.allclose(y[[0, 3]].float(), ref[[0, 3]], atol=2e-2)


def test_float32_squares_overflow_falls_back_to_float64():
    x = (torch.randn(3, 515, dtype=torch.float64) * 1e25).float()  # d^2 overflows float32
    y = fused_layer_norm(x, 515)
    assert torch.isfinite(y).all()
    assert torch.allclose(y.double(), F.layer_norm(x.double(), (515, )), atol=1e-5)


def test_weight_and_bias_gradients_are_deterministic():
    g = torch.Generator().manual_seed(6)
    x, dy = [torch.randn(257, 300, generator=g) for _ in range(2)]
    w, b = torch.rand(300, generator=g) + 0.5, torch.randn(300, generator=g)
    grads = []
    for _ in range(2):
        ws, bs = w.clone().requires_grad_(), b.clone().requires_grad_()
        fused_layer_norm(x, 300, ws, bs).backward(dy)
        grads.append((ws.grad, bs.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    ws, bs = w.clone().double().requires_grad_(), b.clone().double().requires_grad_()
    F.layer_norm(x.double(), (300, ), ws, bs).backward(dy.double())
    assert torch.allclose(grads[0][0].double(), ws.grad, atol=1e-4, rtol=1e-5)
    assert torch.allclose(grads[0][1].double(), bs.grad, atol=1e-4, rtol=1e-5)


def test_inference_path_equals_autograd_path():
    """Without grad, fused_layer_norm calls the kernel directly; results are the same bits."""
    g = torch.Generator().manual_seed(7)
    x, r = [torch.randn(2, 5, 40, generator=g) for _ in range(2)]
    w, b, pb = [torch.randn(40, generator=g) for _ in range(3)]
    with torch.no_grad():
        y0, s0 = fused_layer_norm(x, 40, w, b, residual=r, pre_bias=pb, return_prenorm=True)
    xg = x.clone().requires_grad_()
    y1, s1 = fused_layer_norm(xg, 40, w, b, residual=r, pre_bias=pb, return_prenorm=True)
    assert y0.shape == x.shape and s0.shape == x.shape and not y0.requires_grad
    assert torch.equal(y0, y1) and torch.equal(s0, s1)
