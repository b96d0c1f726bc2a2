"""Fused LayerNorm (Ba et al., 2016, eq. 4) with an optional "add bias + residual" in front.

``s = x + pre_bias + residual`` and ``y = (s - E[s]) / sqrt(Var[s] + eps) * weight + bias`` over
the last dimension, in one kernel per direction (``csrc/pytorch/{cpu,cuda}/layer_norm*``): the
pre-LN transformer block's residual add and the normalisation read the activations once.  The
pre-norm sum ``s`` is returned when asked for, since it is the next block's residual stream.

:class:`FusedLayerNorm` is a drop-in ``nn.LayerNorm`` (same parameters and state-dict keys)
registered as ``mmext.FusedLN``, so mmcv's ``build_norm_layer`` users take
``norm_cfg=dict(type='mmext.FusedLN')``.  Without the compiled extension, or on a device it was
not built for, it computes the same thing with ``torch.nn.functional.layer_norm``.
"""
import numbers
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmext.registry import MODELS
from mmext.utils.ext_loader import ext_available, load_ext

__all__ = ['FusedLayerNorm', 'fused_layer_norm']

_FUNCS = ('layer_norm_fwd', 'layer_norm_bwd')
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _kernel_usable(x: Tensor) -> bool:
    if x.dtype not in _DTYPES or not ext_available('_ext', _FUNCS):
        return False
    if x.device.type == 'cpu':
        return True
    return x.device.type == 'cuda' and bool(load_ext('_ext', _FUNCS).with_cuda)


class _FusedLayerNormFunction(torch.autograd.Function):
    """Autograd for the compiled kernels on ``[M, N]`` rows."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                residual: Optional[Tensor], pre_bias: Optional[Tensor], eps: float,
                keep_prenorm: bool) -> Tuple[Tensor, Tensor]:
        ext = load_ext('_ext', _FUNCS)
        y, mean, rstd, prenorm = ext.layer_norm_fwd(x, residual, pre_bias, weight, bias, eps,
                                                    keep_prenorm)
        added = residual is not None or pre_bias is not None  # then prenorm is what was normalised
        ctx.save_for_backward(prenorm if added else x, mean, rstd, weight)
        ctx.has_bias, ctx.has_residual = bias is not None, residual is not None
        ctx.has_pre_bias = pre_bias is not None
        return y, (prenorm if keep_prenorm else x.new_empty(0))

    @staticmethod
    def backward(ctx, dy: Tensor, dprenorm: Optional[Tensor]):
        s, mean, rstd, weight = ctx.saved_tensors
        if dprenorm is not None and dprenorm.numel() == 0:
            dprenorm = None
        dx, dweight, dbias = load_ext('_ext', _FUNCS).layer_norm_bwd(
            dy.contiguous(), s, mean, rstd, weight,
            None if dprenorm is None else dprenorm.contiguous(), weight is not None or ctx.has_bias)
        return (dx, dweight if weight is not None else None, dbias if ctx.has_bias else None,
                dx if ctx.has_residual else None, dx.sum(0) if ctx.has_pre_bias else None, None,
                None)


def fused_layer_norm(x: Tensor,
                     normalized_shape: Union[int, Sequence[int]],
                     weight: Optional[Tensor] = None,
                     bias: Optional[Tensor] = None,
                     eps: float = 1e-5,
                     residual: Optional[Tensor] = None,
                     pre_bias: Optional[Tensor] = None,
                     return_prenorm: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """LayerNorm of ``x + pre_bias + residual`` over ``normalized_shape`` (the last dims).

    Returns ``y``, or ``(y, x + pre_bias + residual)`` with ``return_prenorm=True``.  Inputs of
    any shape and layout; ``residual`` must have ``x``'s shape, ``pre_bias``/``weight``/``bias``
    ``normalized_shape``.
    """
    shape = (normalized_shape, ) if isinstance(normalized_shape, numbers.Integral) \
        else tuple(normalized_shape)
    if tuple(x.shape[x.dim() - len(shape):]) != shape or x.dim() < len(shape):
        raise ValueError(f'fused_layer_norm: input of shape {tuple(x.shape)} does not end with '
                         f'normalized_shape {shape}')
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f'fused_layer_norm: residual shape {tuple(residual.shape)} differs '
                         f'from the input shape {tuple(x.shape)}')
    if not _kernel_usable(x):  # reference path: same maths with torch ops
        s = x if pre_bias is None else x + pre_bias
        s = s if residual is None else s + residual
        y = F.layer_norm(s, shape, weight, bias, eps)
        return (y, s) if return_prenorm else y
    n = 1
    for d in shape:
        n *= d
    two_d = x.dim() == 2 and len(shape) == 1  # rows already; skip the reshapes (~1 us each)
    flat = (lambda t: t if t is None or t.dim() == 1 else t.reshape(-1))
    rows = (lambda t: t if t is None or two_d else t.reshape(-1, n))
    args = (rows(x).contiguous(), flat(weight), flat(bias), rows(residual), flat(pre_bias),
            float(eps), return_prenorm)
    if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, weight, bias, residual, pre_bias)):
        y, s = _FusedLayerNormFunction.apply(*args)
    else:  # inference: skip the autograd.Function overhead
        y, _, _, s = load_ext('_ext', _FUNCS).layer_norm_fwd(args[0], args[3], args[4], args[1],
                                                             args[2], args[5], return_prenorm)
    if not two_d:
        y = y.view(x.shape)
        s = s.view(x.shape) if return_prenorm else s
    return (y, s) if return_prenorm else y


@MODELS.register_module(name=['FusedLN', 'FusedLayerNorm'])
class FusedLayerNorm(nn.Module):
    """``nn.LayerNorm`` computed by mmext's fused kernels; optional residual input.

    Args:
        normalized_shape: Size of the trailing dimension(s) to normalise (mmcv's
            ``build_norm_layer`` passes the channel count positionally).
        eps: Added to the variance. Defaults to 1e-5.
        elementwise_affine: Learn ``weight`` (init 1) and ``bias`` (init 0). Defaults to True.
        bias: Learn ``bias`` when ``elementwise_affine``. Defaults to True.

    ``forward(x)`` returns ``LN(x)``; ``forward(x, residual)`` returns ``(LN(x + residual),
    x + residual)``, the pre-LN block's normalised input and its new residual stream.
    """
    _abbr_ = 'ln'  # mmcv's build_norm_layer names the layer ln/ln1/... as for nn.LayerNorm

    def __init__(self,
                 normalized_shape: Union[int, Sequence[int]],
                 eps: float = 1e-5,
                 elementwise_affine: bool = True,
                 bias: bool = True,
                 device=None,
                 dtype=None) -> None:
        super().__init__()
        self.normalized_shape = (normalized_shape, ) if isinstance(
            normalized_shape, numbers.Integral) else tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        kw = dict(device=device, dtype=dtype)
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape, **kw))
            self.bias = nn.Parameter(torch.zeros(self.normalized_shape, **kw)) if bias else None
        else:
            self.register_parameter('weight', None)
            self.register_parameter('bias', None)

    def forward(self,
                x: Tensor,
                residual: Optional[Tensor] = None) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        return fused_layer_norm(
            x,
            self.normalized_shape,
            self.weight,
            self.bias,
            self.eps,
            residual=residual,
            return_prenorm=residual is not None)

    def extra_repr(self) -> str:
        return (f'{self.normalized_shape}, eps={self.eps}, '
                f'elementwise_affine={self.elementwise_affine}')
