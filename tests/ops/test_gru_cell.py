"""mmext.ops.gru_cell: the GRU4Rec paper's cell as one autograd node equals the plain ops."""
import pytest
import torch

from mmext.ops.gru_cell import gru_cell


def inputs(b=5, hidden=4, dtype=torch.float64, h_grad=True):
    g = torch.Generator().manual_seed(0)
    gx = torch.randn(b, 3 * hidden, generator=g, dtype=dtype, requires_grad=True)
    h = torch.randn(b, hidden, generator=g, dtype=dtype, requires_grad=h_grad)
    u_rz = torch.randn(2 * hidden, hidden, generator=g, dtype=dtype, requires_grad=True)
    u_h = torch.randn(hidden, hidden, generator=g, dtype=dtype, requires_grad=True)
    return gx, h, u_rz, u_h


def test_gradcheck_fp64():
    assert torch.autograd.gradcheck(lambda *t: gru_cell(*t), inputs())


@pytest.mark.parametrize('h_grad', [True, False])
def test_fused_equals_plain_outputs_and_gradients(h_grad):
    fused, plain = inputs(b=32, hidden=100, dtype=torch.float32, h_grad=h_grad), None
    plain = [t.detach().clone().requires_grad_(t.requires_grad) for t in fused]
    out_f, out_p = gru_cell(*fused), gru_cell(*plain, backend='torch')
    torch.testing.assert_close(out_f, out_p, rtol=1e-6, atol=1e-6)
    weight = torch.randn_like(out_f)
    (out_f * weight).sum().backward()
    (out_p * weight).sum().backward()
    for f, p in zip(fused, plain):
        if p.requires_grad:
            torch.testing.assert_close(f.grad, p.grad, rtol=1e-5, atol=1e-5)
        else:
            assert f.grad is None


def test_one_autograd_node():
    out = gru_cell(*inputs())
    assert type(out.grad_fn).__name__ == '_GRUCellBackward'


def test_shape_errors_name_the_tensor():
    gx, h, u_rz, u_h = inputs()
    with pytest.raises(ValueError, match='gx must be'):
        gru_cell(gx[:, :-1], h, u_rz, u_h)
    with pytest.raises(ValueError, match='u_rz must be'):
        gru_cell(gx, h, u_rz[:-1], u_h)
    with pytest.raises(ValueError, match='backend'):
        gru_cell(gx, h, u_rz, u_h, backend='cuda')
