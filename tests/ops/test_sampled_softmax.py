"""mmext.ops.sampled_softmax_ce: GRU4Rec's sampled softmax cross-entropy as one autograd node
equals the plain ops (logits, logQ shift, cross-entropy, scaling)."""
import pytest
import torch

from mmext.ops.sampled_softmax import sampled_softmax_ce


def inputs(b=4, m=9, d=5, dtype=torch.float64, with_shift=True):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(b, d, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.randn(m, d, generator=g, dtype=dtype, requires_grad=True)
    bias = torch.randn(m, generator=g, dtype=dtype, requires_grad=True)
    shift = torch.randn(m, generator=g, dtype=dtype) if with_shift else None
    return hidden, weight, bias, shift


def test_gradcheck_fp64():
    h, w, b, s = inputs()
    assert torch.autograd.gradcheck(lambda h, w, b: sampled_softmax_ce(h, w, b, s, 0.25), (h, w, b))


@pytest.mark.parametrize('with_shift', [True, False])
@pytest.mark.parametrize('scale', [1.0, 1 / 32])
def test_fused_equals_plain(with_shift, scale):
    fused = inputs(b=32, m=544, d=100, dtype=torch.float32, with_shift=with_shift)
    plain = [
        t if t is None or not t.requires_grad else t.detach().clone().requires_grad_()
        for t in fused
    ]
    out_f = sampled_softmax_ce(*fused, scale=scale)
    out_p = sampled_softmax_ce(*plain, scale=scale, backend='torch')
    torch.testing.assert_close(out_f, out_p, rtol=1e-5, atol=1e-5)
    out_f.backward()
    out_p.backward()
    for f, p in zip(fused[:3], plain[:3]):
        torch.testing.assert_close(f.grad, p.grad, rtol=1e-5, atol=1e-5)  # fp32 sums of 544
    assert type(out_f.grad_fn).__name__ == '_SampledSoftmaxCEBackward'


def test_errors_name_the_problem():
    h, w, b, s = inputs()
    with pytest.raises(ValueError, match='at least as many candidates'):
        sampled_softmax_ce(h, w[:3], b[:3])
    with pytest.raises(ValueError, match='bias'):
        sampled_softmax_ce(h, w, b[:-1])
    with pytest.raises(ValueError, match='constant'):
        sampled_softmax_ce(h, w, b, s.clone().requires_grad_())
    with pytest.raises(ValueError, match='backend'):
        sampled_softmax_ce(h, w, b, backend='cuda')
