"""In-place AdagradM updates: Adagrad (Duchi et al., JMLR 2011) with heavy-ball momentum on the
Adagrad-scaled step, the optimiser of the official GRU4Rec code (``IndexedAdagradM``).

Per element of a parameter ``p`` with gradient ``g``, accumulator ``a`` and velocity ``v``:

    a ← a + g²;   s = g / sqrt(a + ε);   v ← μ v − lr · s,  p ← p + v     (μ > 0)
                                          p ← p − lr · s                  (μ = 0)

:func:`adagrad_m_rows_` applies a row-sparse gradient ``(indices (nnz,), values (nnz, D))`` of a
``(N, D)`` parameter to those rows only (repeated indices are summed first, as coalescing does);
:func:`adagrad_m_dense_` applies a dense gradient everywhere.  On CPU with mmext's compiled ops
each is one pass (``csrc/pytorch/cpu/adagrad_m_cpu.cpp``): a GRU4Rec step touches a few hundred
rows of a hundred floats, where the torch version (``backend='torch'``, the reference and the
fallback on other devices) spends more time in its seven kernels' overhead than in arithmetic.
The kernels do torch's arithmetic operation for operation; the backends agree to rounding
(the order in which repeated rows are summed, and multiply-adds that torch's vectorised kernels
may fuse).  ``backend``: ``'auto'`` (the kernel where it applies),
``'compiled'`` or ``'torch'``.
"""
from typing import Optional

import torch
from torch import Tensor

from mmext.utils.ext_loader import ext_available, load_ext

__all__ = ['adagrad_m_rows_', 'adagrad_m_dense_']

_FUNCS = ('adagrad_m_rows', 'adagrad_m_dense')


def _use_kernel(backend: str, *state: Tensor) -> bool:
    """Whether to run the compiled kernel on the parameter state ``state``: ``'auto'`` where it
    applies (CPU, fp32/fp64, contiguous state, the library built), ``'compiled'`` always (an
    error says why it cannot), ``'torch'`` never."""
    if backend not in ('auto', 'compiled', 'torch'):
        raise ValueError(f"backend must be 'auto', 'compiled' or 'torch', got {backend!r}")
    if backend == 'compiled':
        load_ext('_ext', _FUNCS)  # raises with a rebuild hint when missing or stale
        return True
    return (backend == 'auto' and state[0].device.type == 'cpu'
            and state[0].dtype in (torch.float32, torch.float64)
            and all(t.is_contiguous() for t in state) and ext_available('_ext', _FUNCS))


def adagrad_m_rows_(param: Tensor,
                    acc: Tensor,
                    vel: Optional[Tensor],
                    indices: Tensor,
                    values: Tensor,
                    lr: float,
                    momentum: float,
                    eps: float,
                    backend: str = 'auto') -> None:
    """Update rows ``indices`` ``(nnz,)`` of ``param`` ``(N, D)`` (and of ``acc``, ``vel``) in
    place with gradient rows ``values`` ``(nnz, D)``; ``vel`` is given iff ``momentum > 0``."""
    if _use_kernel(backend, param, acc, *([] if vel is None else [vel])):
        load_ext('_ext', _FUNCS).adagrad_m_rows(param, acc, vel, indices, values, lr, momentum, eps)
        return
    grad = torch.sparse_coo_tensor(
        indices.unsqueeze(0), values, param.shape, check_invariants=True).coalesce()
    rows, g_r = grad.indices()[0], grad.values()
    a_r = acc.index_select(0, rows).addcmul_(g_r, g_r)
    acc.index_copy_(0, rows, a_r)
    step = g_r / a_r.add_(eps).sqrt_()
    if vel is not None:
        v_r = vel.index_select(0, rows).mul_(momentum).sub_(step, alpha=lr)
        vel.index_copy_(0, rows, v_r)
        param.index_add_(0, rows, v_r)
    else:
        param.index_add_(0, rows, step, alpha=-lr)


def adagrad_m_dense_(param: Tensor,
                     acc: Tensor,
                     vel: Optional[Tensor],
                     grad: Tensor,
                     lr: float,
                     momentum: float,
                     eps: float,
                     backend: str = 'auto') -> None:
    """Update all of ``param`` (any shape; and ``acc``, ``vel``) in place with ``grad``."""
    if _use_kernel(backend, param, acc, *([] if vel is None else [vel])):
        load_ext('_ext', _FUNCS).adagrad_m_dense(param, acc, vel, grad, lr, momentum, eps)
        return
    with torch.no_grad():
        acc.addcmul_(grad, grad)
        step = grad / acc.add(eps).sqrt_()
        if vel is not None:
            vel.mul_(momentum).sub_(step, alpha=lr)
            param.add_(vel)
        else:
            param.add_(step, alpha=-lr)
