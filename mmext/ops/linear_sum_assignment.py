"""Batched exact linear sum assignment in compiled code (one call per batch, no Python loop).

The CPU kernel (``csrc/pytorch/cpu/linear_sum_assignment_cpu.cpp``) runs the shortest
augmenting path algorithm scipy uses on every image's block, images in parallel, reading the
costs in place (no float64 host copy).
"""
from torch import Tensor

from mmext.utils.ext_loader import ext_available, load_ext

__all__ = ['compiled_lsa_usable', 'compiled_linear_sum_assignment']


def compiled_lsa_usable(cost: Tensor) -> bool:
    """Whether :func:`compiled_linear_sum_assignment` can solve ``cost`` where it lies."""
    return (cost.device.type == 'cpu' and cost.is_floating_point()
            and ext_available('_ext', ('batched_linear_sum_assignment', )))


def compiled_linear_sum_assignment(cost: Tensor, num_rows: Tensor, num_cols: Tensor) -> Tensor:
    """``[B, R]`` long: the column matched to each row of ``cost[b, :num_rows[b],
    :num_cols[b]]`` (minimum total cost), ``-1`` for unmatched and padding rows.

    ``cost`` must be finite inside each block (check it first: the solver cannot tell a NaN
    from a legitimate cost).
    """
    ext = load_ext('_ext', ['batched_linear_sum_assignment'])
    return ext.batched_linear_sum_assignment(cost.detach(), num_rows.long(), num_cols.long())
