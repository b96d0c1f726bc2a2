"""GRU4Rec's sampled ranking losses (Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k
Gains for Session-based Recommendations", CIKM 2018).

All losses take a score matrix ``logits`` of shape ``(B, M)``: row ``i`` scores the candidates of
example ``i``, whose positive is column ``i`` (the batch's own targets come first, ``B <= M``;
columns ``B..M-1`` are the shared extra samples).  Every other column is a negative.  The losses
are summed over the rows (``reduction='sum'``) or averaged (``'mean'``); :class:`GRU4Rec`
divides the sum by its number of slots, as the official training step does.

* Cross-entropy (Eq. 1 of the CIKM paper's softmax, with the logQ sampling correction of Bengio &
  Senecal 2008 / Yi et al. 2019 when ``logq > 0``): ``-log softmax(logits - logq * log Q)_ii``.
  The logits go straight into ``F.cross_entropy``: no softmax is applied before it.
* BPR-max (Eq. 9): ``-log(sum_j s_j sigmoid(r_i - r_j)) + bpreg * sum_j s_j r_j^2``, where
  ``s = softmax over the negatives only`` (the positive is excluded from the softmax).
* TOP1-max (Eq. 8): ``sum_j s_j (sigmoid(r_j - r_i) + sigmoid(r_j^2))``, same ``s``.
"""
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ['negative_softmax', 'cross_entropy_logq', 'bpr_max_loss', 'top1_max_loss']


def _reduce(per_row: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == 'sum':
        return per_row.sum()
    if reduction == 'mean':
        return per_row.mean()
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def _check_shape(logits: torch.Tensor) -> None:
    b, m = logits.shape
    if b > m:
        raise ValueError(f'logits {tuple(logits.shape)}: need at least one column per row')


def _positive_mask(logits: torch.Tensor) -> torch.Tensor:
    _check_shape(logits)
    b, m = logits.shape
    return torch.eye(b, m, dtype=torch.bool, device=logits.device)


def negative_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax of each row over its negatives; the positive (diagonal) gets weight exactly 0."""
    return torch.softmax(logits.masked_fill(_positive_mask(logits), float('-inf')), dim=1)


def cross_entropy_logq(logits: torch.Tensor,
                       log_q: Optional[torch.Tensor] = None,
                       logq: float = 0.0,
                       reduction: str = 'sum') -> torch.Tensor:
    """Softmax cross-entropy with the positive on the diagonal, ``log_q`` (shape ``(M,)``) being
    the log sampling probability of each column, subtracted ``logq`` times."""
    _check_shape(logits)
    if logq > 0:
        if log_q is None:
            raise ValueError('logq > 0 needs the log sampling probabilities log_q')
        logits = logits - (log_q if logq == 1 else logq * log_q)  # (M,) broadcast over rows
    target = torch.arange(logits.shape[0], device=logits.device)
    return _reduce(F.cross_entropy(logits, target, reduction='none'), reduction)


def bpr_max_loss(logits: torch.Tensor,
                 bpreg: float = 1.0,
                 reduction: str = 'sum',
                 eps: float = 1e-24) -> torch.Tensor:
    """BPR-max; ``eps`` guards the log exactly as in the official code."""
    weights = negative_softmax(logits)
    pos = logits.diagonal().unsqueeze(1)
    ranked = (torch.sigmoid(pos - logits) * weights).sum(1)
    reg = (logits.pow(2) * weights).sum(1)
    return _reduce(-torch.log(ranked + eps) + bpreg * reg, reduction)


def top1_max_loss(logits: torch.Tensor, reduction: str = 'sum') -> torch.Tensor:
    """TOP1-max."""
    weights = negative_softmax(logits)
    pos = logits.diagonal().unsqueeze(1)
    per_row = (weights * (torch.sigmoid(logits - pos) + torch.sigmoid(logits.pow(2)))).sum(1)
    return _reduce(per_row, reduction)
