"""Gathering per-rank feature batches for contrastive losses, with exact gradient semantics.

Contrastive losses (CLIP, Radford et al. 2021; ALBEF, Li et al. 2021) compare every sample with
every other sample of the *global* batch, so each rank needs the features of all ranks.  Two
gathers are provided, both accepting a different number of rows on every rank (the last batch of
an epoch):

* :func:`gather_no_grad` -- plain ``all_gather``; the result carries no gradient, except that
  the caller may splice its own local tensor back in (:func:`gather_features` does).
* :class:`AllGatherWithGrad` -- ``all_gather`` whose backward sums the gradient that every rank's
  loss sends to a slice (an all-reduce of the gathered gradient) and returns the local slice.

Why the sum is right under DDP: DistributedDataParallel *averages* parameter gradients over the
``W`` ranks.  If rank ``r``'s loss is ``L_r`` and the global loss is ``L = sum_r L_r / W``
(each ``L_r`` scaled so that this holds), the gradient of ``L`` with respect to the features
``f_r`` computed on rank ``r`` is ``sum_r' dL_r'/df_r / W``.  Rank ``r`` receives
``sum_r' dL_r'/df_r`` from the all-reduce; DDP's division by ``W`` then gives exactly
``dL/dtheta``.  See :mod:`mmext.models.losses.clip_loss` for the full derivation.

Rank and world size come from :func:`mmengine.dist.get_dist_info` (the default process group;
``(0, 1)`` without one), so every gather here is the identity outside distributed training.
"""
from typing import List, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_dist_info
from torch import Tensor

__all__ = ['gather_no_grad', 'AllGatherWithGrad', 'gather_features', 'ScaleGrad']


def _all_sizes(x: Tensor, world_size: int) -> List[int]:
    size = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    torch_dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def _padded_all_gather(x: Tensor, sizes: List[int]) -> List[Tensor]:
    """all_gather rows of ``x`` when ranks hold different numbers of rows (pad to the max)."""
    max_rows = max(sizes)
    if x.shape[0] < max_rows:
        pad = x.new_zeros((max_rows - x.shape[0], ) + tuple(x.shape[1:]))
        x = torch.cat([x, pad])
    out = [torch.empty_like(x) for _ in sizes]
    torch_dist.all_gather(out, x.contiguous())
    return [t[:n] for t, n in zip(out, sizes)]


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """Rows of ``x`` from every rank, concatenated in rank order, without gradient."""
    rank, world_size = get_dist_info()
    if world_size == 1:
        return x.detach()
    sizes = _all_sizes(x, world_size)
    return torch.cat(_padded_all_gather(x.detach(), sizes))


class AllGatherWithGrad(torch.autograd.Function):
    """``all_gather`` (rank order, any row counts) whose backward all-reduces (sums) the gradient
    of the gathered tensor over the ranks and returns the local slice of the sum."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: List[int]) -> Tensor:
        ctx.rank, ctx.sizes = get_dist_info()[0], sizes
        return torch.cat(_padded_all_gather(x.detach(), sizes))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        torch_dist.all_reduce(grad, op=torch_dist.ReduceOp.SUM)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None


class ScaleGrad(torch.autograd.Function):
    """Identity in forward; multiplies the incoming gradient by ``scale`` in backward."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Tensor, None]:
        return grad * ctx.scale, None


def gather_features(x: Tensor, with_grad: bool = True) -> Tuple[Tensor, int]:
    """Features of the global batch and the row where this rank's rows start.

    Args:
        x: ``(n_r, ...)`` rows of this rank.
        with_grad: ``True``: every slice is differentiable on every rank
            (:class:`AllGatherWithGrad`).  ``False``: only the local slice is (the other ranks'
            rows are constants), which is what losses whose other-rank rows never need a
            gradient want (momentum keys) and what open_clip's default mode does.

    Returns:
        ``(gathered, offset)``: ``gathered[offset:offset + n_r]`` are this rank's rows.
    """
    rank, world_size = get_dist_info()
    if world_size == 1:
        return x, 0
    sizes = _all_sizes(x, world_size)
    if with_grad and x.requires_grad:
        return AllGatherWithGrad.apply(x, sizes), sum(sizes[:rank])
    parts = _padded_all_gather(x.detach(), sizes)
    parts[rank] = x  # splice the differentiable local rows back in
    return torch.cat(parts), sum(sizes[:rank])
