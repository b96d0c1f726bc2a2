"""The inverse of the sigmoid, with clamping, for boxes kept in logit space.

Deformable DETR (Zhu et al., ICLR 2021, appendix A.4) refines a normalised box ``b`` by adding
the predicted ``Δ`` in logit space, ``b' = σ(Δ + σ⁻¹(b))``, which keeps ``b'`` in ``[0, 1]``.
"""
import torch
from torch import Tensor

__all__ = ['inverse_sigmoid']


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``log(x / (1 - x))`` elementwise, ``x`` clamped to ``[0, 1]`` and both ``x`` and ``1 - x``
    to at least ``eps``, so 0 and 1 map to finite values (about ±11.5 for ``eps=1e-5``)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))
