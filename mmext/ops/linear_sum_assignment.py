"""Batched exact linear sum assignment: one call per batch of padded cost blocks.

:func:`linear_sum_assignment` picks the backend itself:

* ``'compiled'``: the CPU kernel (``csrc/pytorch/cpu/linear_sum_assignment_cpu.cpp``) runs the
  shortest augmenting path algorithm scipy uses on every image's block, images in parallel,
  reading the costs in place (no float64 host copy).  Taken for CPU floating costs when mmext's
  ops are built.
* ``'scipy'``: one float64 host copy of the whole batch, then ``scipy.optimize.
  linear_sum_assignment`` per image.  Taken otherwise (no build, a stale build, CUDA costs).

Both are exact: they reach the same minimum total cost and, where the optimum is unique, the
same matching.  docs/components/hungarian_assigner.md gives the measurements behind the choice.
"""
import numpy as np
import torch
from torch import Tensor

from mmext.utils.ext_loader import ext_available, load_ext

__all__ = ['LSA_BACKENDS', 'linear_sum_assignment']

LSA_BACKENDS = ('auto', 'compiled', 'scipy')
_FUNCS = ('batched_linear_sum_assignment', )


def _compiled_usable(cost: Tensor) -> bool:
    return (cost.device.type == 'cpu' and cost.is_floating_point()
            and ext_available('_ext', _FUNCS))


def _compiled(cost: Tensor, num_rows: Tensor, num_cols: Tensor) -> Tensor:
    ext = load_ext('_ext', _FUNCS)
    return ext.batched_linear_sum_assignment(cost.detach(), num_rows.long(), num_cols.long())


def _scipy(cost: Tensor, num_rows: Tensor, num_cols: Tensor) -> Tensor:
    from scipy.optimize import linear_sum_assignment as scipy_lsa  # only this path needs scipy
    B, R, _ = cost.shape
    host = cost.detach().to('cpu', torch.float64).numpy()  # one device->host copy per batch
    nr, nc = num_rows.tolist(), num_cols.tolist()
    match = np.full((B, R), -1, dtype=np.int64)
    for b in range(B):
        if nr[b] and nc[b]:
            rows, cols = scipy_lsa(host[b, :nr[b], :nc[b]])
            match[b, rows] = cols
    return torch.from_numpy(match).to(cost.device)


def linear_sum_assignment(cost: Tensor,
                          num_rows: Tensor,
                          num_cols: Tensor,
                          backend: str = 'auto') -> Tensor:
    """Minimum-cost matching of every block ``cost[b, :num_rows[b], :num_cols[b]]``.

    Args:
        cost: ``[B, R, C]`` floating costs; outside each image's block it is padding and may
            hold anything.  Inside each block it must be finite (check it first: no solver can
            tell a NaN from a legitimate cost).
        num_rows: ``[B]`` valid rows (queries) per image.
        num_cols: ``[B]`` valid columns (targets) per image.
        backend: ``'auto'`` (default: ``'compiled'`` where it can run, else ``'scipy'``), or
            force ``'compiled'`` / ``'scipy'`` (tests, benchmarks).

    Returns:
        ``[B, R]`` long on ``cost``'s device: the column matched to each row, ``-1`` for
        unmatched and padding rows.
    """
    if backend not in LSA_BACKENDS:
        raise ValueError(f'backend must be one of {LSA_BACKENDS}, got {backend!r}')
    if backend == 'compiled' or (backend == 'auto' and _compiled_usable(cost)):
        return _compiled(cost, num_rows, num_cols)
    return _scipy(cost, num_rows, num_cols)
