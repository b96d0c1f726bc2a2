"""NaN/inf checks of padded ``[B, R, C]`` cost batches, one host sync per batch.

No linear-sum-assignment solver can tell a NaN from a legitimate cost, so the assigner checks the
total cost before solving and, only on failure, each term, to name the culprit.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ['valid_mask', 'nonfinite_images', 'nonfinite_blocks']


def valid_mask(num_rows: Tensor, num_cols: Tensor, R: int, C: int) -> Tensor:
    """``[B, R, C]`` bool mask of each image's ``[:num_rows[b], :num_cols[b]]`` block."""
    rows = torch.arange(R, device=num_rows.device)
    cols = torch.arange(C, device=num_rows.device)
    return (rows[None, :, None] < num_rows[:, None, None]) & \
        (cols[None, None, :] < num_cols[:, None, None])


def nonfinite_images(cost: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """``[B]`` bool: which images hold NaN/inf inside their valid block.

    A float64 sum of float32 entries is finite iff every entry is, and one reduction is much
    cheaper than an elementwise ``isfinite`` pass plus ``any``; a non-finite sum is confirmed
    entry by entry, so float64 costs near overflow are not rejected.
    """
    c = cost.detach()
    if valid is not None:
        c = torch.where(valid, c, c.new_zeros(()))
    bad = ~torch.isfinite(c.sum((1, 2), dtype=torch.float64))
    if bool(bad.any()):  # rare: confirm entry by entry (huge finite float64 can overflow a sum)
        bad = ~torch.isfinite(c).flatten(1).all(1)
    return bad


def nonfinite_blocks(cost: Tensor, num_rows: Tensor,
                     num_cols: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
    """``[B]`` bool of the images whose ``[:num_rows[b], :num_cols[b]]`` block of ``cost``
    holds NaN/inf, and the valid mask used (``None`` when every block fills the tensor)."""
    B, R, C = cost.shape
    full = bool(((num_rows == R) & (num_cols == C)).all())
    valid = None if full else valid_mask(num_rows, num_cols, R, C)
    bad = nonfinite_images(cost)  # padding is usually finite: mask only when something is off
    if valid is not None and bool(bad.any()):
        bad = nonfinite_images(cost, valid)
    return bad, valid
