"""The GRU cell of the GRU4Rec paper, as one autograd node.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR 2016,
Eqs. 1-4, with the input projection ``gx = W x + b`` computed by the caller:

    [r, z] = σ(gx[:, :2H] + h U_rzᵀ)          (reset and update gates)
    ĥ      = tanh(gx[:, 2H:] + (r ⊙ h) U_hᵀ)  (candidate; the reset gate applies before U_h)
    h'     = (1 − z) ⊙ h + z ⊙ ĥ

(the paper's convention: ``z`` weights the candidate; ``nn.GRUCell`` applies its reset gate
after the hidden product, a different cell).  The plain version records 16 autograd nodes for a
step whose tensors are tiny (batch 32 × 100 units in the official recipe), so a training step is
dominated by per-op overhead.  :func:`gru_cell` runs the same arithmetic in 7 kernels and one
autograd node with a hand-written backward (gradients for ``gx``, ``h``, ``U_rz`` and ``U_h``);
``backend='torch'`` is the plain reference the tests compare it with.

Shapes: ``gx`` ``(B, 3H)`` (r, z, candidate parts in that order), ``h`` ``(B, H)``,
``u_rz`` ``(2H, H)``, ``u_h`` ``(H, H)``; returns ``(B, H)``.
"""
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ['gru_cell', 'gru_cell_torch']


def gru_cell_torch(gx: Tensor, h: Tensor, u_rz: Tensor, u_h: Tensor) -> Tensor:
    """The cell in plain torch ops (the reference)."""
    hidden = h.shape[1]
    xr, xz, xh = gx.split(hidden, dim=1)
    hr, hz = torch.nn.functional.linear(h, u_rz).split(hidden, dim=1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    cand = torch.tanh(xh + torch.nn.functional.linear(r * h, u_h))
    return (1 - z) * h + z * cand


class _GRUCell(torch.autograd.Function):

    @staticmethod
    def forward(ctx, gx: Tensor, h: Tensor, u_rz: Tensor, u_h: Tensor) -> Tensor:
        hidden = h.shape[1]
        rz = torch.sigmoid(torch.addmm(gx[:, :2 * hidden], h, u_rz.t()))
        r, z = rz[:, :hidden], rz[:, hidden:]
        rh = r * h
        cand = torch.tanh(torch.addmm(gx[:, 2 * hidden:], rh, u_h.t()))
        ctx.save_for_backward(h, u_rz, u_h, rz, rh, cand)
        return torch.lerp(h, cand, z)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        h, u_rz, u_h, rz, rh, cand = ctx.saved_tensors
        hidden = h.shape[1]
        r, z = rz[:, :hidden], rz[:, hidden:]
        d_gx = grad_out.new_empty(h.shape[0], 3 * hidden)
        d_a_r, d_a_z, d_a_h = d_gx.split(hidden, dim=1)  # views: written in place below
        # candidate: h' = h + z (ĥ - h);  ĥ = tanh(a_h)
        torch.mul(grad_out * z, 1 - cand * cand, out=d_a_h)
        d_rh = d_a_h.mm(u_h)
        # update gate: dz = g (ĥ - h);  z = σ(a_z)
        torch.mul(grad_out * (cand - h), z * (1 - z), out=d_a_z)
        # reset gate: d r = d(r h) h;  r = σ(a_r)
        torch.mul(d_rh * h, r * (1 - r), out=d_a_r)
        d_a_rz = d_gx[:, :2 * hidden]
        d_h = d_u_rz = d_u_h = None
        if ctx.needs_input_grad[1]:
            d_h = torch.addmm(grad_out * (1 - z) + d_rh * r, d_a_rz, u_rz)
        if ctx.needs_input_grad[2]:
            d_u_rz = d_a_rz.t().mm(h)
        if ctx.needs_input_grad[3]:
            d_u_h = d_a_h.t().mm(rh)
        return d_gx, d_h, d_u_rz, d_u_h


def gru_cell(gx: Tensor, h: Tensor, u_rz: Tensor, u_h: Tensor, backend: str = 'fused') -> Tensor:
    """One step of the paper's GRU cell (see the module docstring); ``backend`` ``'fused'`` (one
    autograd node, any device) or ``'torch'`` (plain ops)."""
    hidden = h.shape[-1]
    if h.dim() != 2 or gx.shape != (h.shape[0], 3 * hidden):
        raise ValueError(f'gru_cell: gx must be (B, 3H) for h (B, H), got gx {tuple(gx.shape)}, '
                         f'h {tuple(h.shape)}')
    if u_rz.shape != (2 * hidden, hidden) or u_h.shape != (hidden, hidden):
        raise ValueError(f'gru_cell: u_rz must be (2H, H) and u_h (H, H) for H = {hidden}, got '
                         f'{tuple(u_rz.shape)} and {tuple(u_h.shape)}')
    if backend == 'fused':
        return _GRUCell.apply(gx, h, u_rz, u_h)
    if backend == 'torch':
        return gru_cell_torch(gx, h, u_rz, u_h)
    raise ValueError(f"gru_cell: backend must be 'fused' or 'torch', got {backend!r}")
