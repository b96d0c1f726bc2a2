"""Sampled softmax cross-entropy with a per-candidate logit shift, as one autograd node.

GRU4Rec's training loss (Hidasi & Karatzoglou, CIKM 2018, Sec. 3 and 4.1): row ``i`` of the
batch scores ``M`` candidate items (the batch's own targets first, then shared samples), its
positive being candidate ``i``, with the logQ correction of the sampled softmax (Bengio &
Senecal 2008) subtracted from the logits:

    o_ij = h_i · w_j + b_j − s_j,      loss = scale · Σ_i (logsumexp_j o_ij − o_ii)

Shapes: ``hidden`` ``(B, d)``, ``weight`` ``(M, d)`` and ``bias`` ``(M,)`` (the candidates' rows
of the output table, gathered by the caller), ``shift`` ``(M,)`` or ``None`` (a constant: no
gradient), ``B <= M``.  Returns a scalar.

The plain version (``F.linear`` + shift + ``F.cross_entropy`` + scaling) records five autograd
nodes around one matrix product of a few dozen rows; this one records one and computes the
softmax once in its backward: ``dL/do = scale · (softmax(o) − I)``, then ``dh = dL/do · W``,
``dW = (dL/do)ᵀ h``, ``db = Σ_i dL/do``.  :func:`sampled_softmax_ce_torch` is the reference the
tests compare it with.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ['sampled_softmax_ce', 'sampled_softmax_ce_torch']


def _logits(hidden: Tensor, weight: Tensor, bias: Tensor, shift: Optional[Tensor]) -> Tensor:
    return torch.addmm(bias if shift is None else bias - shift, hidden, weight.t())


def sampled_softmax_ce_torch(hidden: Tensor,
                             weight: Tensor,
                             bias: Tensor,
                             shift: Optional[Tensor] = None,
                             scale: float = 1.0) -> Tensor:
    """The loss in plain torch ops (the reference)."""
    logits = F.linear(hidden, weight, bias)
    if shift is not None:
        logits = logits - shift
    target = torch.arange(hidden.shape[0], device=hidden.device)
    return F.cross_entropy(logits, target, reduction='sum') * scale


class _SampledSoftmaxCE(torch.autograd.Function):

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor, shift: Optional[Tensor],
                scale: float) -> Tensor:
        logits = _logits(hidden, weight, bias, shift)
        lse = torch.logsumexp(logits, dim=1)
        ctx.save_for_backward(hidden, weight, logits, lse)
        ctx.scale = scale
        return (lse.sum() - logits.diagonal().sum()) * scale

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        hidden, weight, logits, lse = ctx.saved_tensors
        d_logits = torch.exp(logits - lse.unsqueeze(1))  # softmax
        d_logits.diagonal().sub_(1.0)
        d_logits.mul_(grad * ctx.scale)
        d_hidden = d_weight = d_bias = None
        if ctx.needs_input_grad[0]:
            d_hidden = d_logits.mm(weight)
        if ctx.needs_input_grad[1]:
            d_weight = d_logits.t().mm(hidden)
        if ctx.needs_input_grad[2]:
            d_bias = d_logits.sum(0)
        return d_hidden, d_weight, d_bias, None, None


def sampled_softmax_ce(hidden: Tensor,
                       weight: Tensor,
                       bias: Tensor,
                       shift: Optional[Tensor] = None,
                       scale: float = 1.0,
                       backend: str = 'fused') -> Tensor:
    """``scale · Σ_i −log softmax(h_i Wᵀ + b − shift)_i`` (see the module docstring);
    ``backend`` ``'fused'`` (one autograd node, any device) or ``'torch'`` (plain ops)."""
    b, m = hidden.shape[0], weight.shape[0]
    if b > m:
        raise ValueError(f'sampled_softmax_ce: {b} rows need at least as many candidates (row i '
                         f'scores its positive, candidate i), got {m}')
    if weight.shape[1] != hidden.shape[1] or bias.shape != (m, ):
        raise ValueError(f'sampled_softmax_ce: hidden {tuple(hidden.shape)} needs weight (M, '
                         f'{hidden.shape[1]}) and bias (M,), got {tuple(weight.shape)} and '
                         f'{tuple(bias.shape)}')
    if shift is not None and (shift.shape != (m, ) or shift.requires_grad):
        raise ValueError(f'sampled_softmax_ce: shift must be a constant (M,) = ({m},) tensor, '
                         f'got {tuple(shift.shape)} (requires_grad={shift.requires_grad})')
    if backend == 'fused':
        return _SampledSoftmaxCE.apply(hidden, weight, bias, shift, float(scale))
    if backend == 'torch':
        return sampled_softmax_ce_torch(hidden, weight, bias, shift, scale)
    raise ValueError(f"sampled_softmax_ce: backend must be 'fused' or 'torch', got {backend!r}")
