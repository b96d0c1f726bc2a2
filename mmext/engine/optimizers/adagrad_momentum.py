"""Adagrad with momentum, the optimiser of the official GRU4Rec code (Hidasi et al., ICLR 2016;
"adagrad + momentum" of its Theano and PyTorch releases, ``IndexedAdagradM``).

Per parameter ``p`` with gradient ``g`` (Duchi et al. 2011 for the accumulator):

    a ← a + g²;   v ← μ v − lr · g / sqrt(a + ε);   p ← p + v        (μ = 0: plain Adagrad step)

The official code updates the item tables *by index*: its item tables produce sparse gradients,
and only the rows of the items in the batch (and its samples) change, their accumulators and
velocities included.  Sparse gradients (``nn.Embedding(sparse=True)``, ``F.embedding(...,
sparse=True)``; mmext's GRU4Rec by default) are applied exactly that way.  For dense gradients,
``skip_zero_rows`` (default) leaves the rows of a 2-D parameter whose gradient is exactly zero
untouched — accumulator, velocity and value — which reproduces it, since an item absent from a
step has a zero row.  Without momentum an all-zero row changes nothing anyway, so the rows are
not searched then: all dense parameters take one multi-tensor (``torch._foreach_*``) update.
"""
from typing import Iterable, List, Tuple

import torch
from torch.optim import Optimizer

from mmext.registry import OPTIMIZERS

__all__ = ['AdagradM']


@OPTIMIZERS.register_module()
class AdagradM(Optimizer):
    """Adagrad with (heavy-ball) momentum on the Adagrad-scaled step; see the module docstring.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        momentum: μ in [0, 1).
        eps: ε inside the square root (official: 1e-6).
        skip_zero_rows: with dense gradients and momentum, emulate the official index-only
            updates of item tables (sparse gradients always update by index).
    """

    def __init__(self,
                 params: Iterable,
                 lr: float = 0.05,
                 momentum: float = 0.0,
                 eps: float = 1e-6,
                 skip_zero_rows: bool = True) -> None:
        if lr <= 0:
            raise ValueError(f'lr must be > 0, got {lr}')
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}')
        if eps <= 0:
            raise ValueError(f'eps must be > 0, got {eps}')
        super().__init__(params,
                         dict(lr=lr, momentum=momentum, eps=eps, skip_zero_rows=skip_zero_rows))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, eps = group['lr'], group['momentum'], group['eps']
            dense: List[Tuple[torch.Tensor, ...]] = []
            for p in group['params']:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state['acc'] = torch.zeros_like(p)
                if mu > 0 and 'velocity' not in state:
                    state['velocity'] = torch.zeros_like(p)
                vel = state.get('velocity') if mu > 0 else None
                if g.is_sparse:
                    g = g.coalesce()
                    self._update_rows(p, g.values(), g.indices()[0], state['acc'], vel, lr, mu, eps)
                    continue
                if vel is not None and group['skip_zero_rows'] and p.dim() == 2:
                    rows = g.ne(0).any(dim=1).nonzero().flatten()
                    if rows.numel() < p.shape[0]:
                        self._update_rows(p, g[rows], rows, state['acc'], vel, lr, mu, eps)
                        continue
                dense.append((p, g, state['acc'], vel))
            if dense:
                self._update_dense(dense, lr, mu, eps)
        return loss

    @staticmethod
    def _update_rows(p, g_r, rows, acc, vel, lr, mu, eps) -> None:
        """Index-only update of ``rows`` (unique) with their gradient rows ``g_r``."""
        a_r = acc.index_select(0, rows).addcmul_(g_r, g_r)
        acc.index_copy_(0, rows, a_r)
        step = g_r / a_r.add_(eps).sqrt_()
        if vel is not None:
            v_r = vel.index_select(0, rows).mul_(mu).sub_(step, alpha=lr)
            vel.index_copy_(0, rows, v_r)
            p.index_add_(0, rows, v_r)
        else:
            p.index_add_(0, rows, step, alpha=-lr)

    @staticmethod
    def _update_dense(dense: List[Tuple[torch.Tensor, ...]], lr, mu, eps) -> None:
        """All dense parameters of a group at once (multi-tensor kernels)."""
        params, grads, accs, vels = (list(t) for t in zip(*dense))
        torch._foreach_addcmul_(accs, grads, grads)
        denom = torch._foreach_add(accs, eps)
        torch._foreach_sqrt_(denom)
        if mu > 0:
            torch._foreach_mul_(vels, mu)
            torch._foreach_addcdiv_(vels, grads, denom, value=-lr)
            torch._foreach_add_(params, vels)
        else:
            torch._foreach_addcdiv_(params, grads, denom, value=-lr)
