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
not searched then.  The updates themselves are :mod:`mmext.ops.adagrad_m`'s: one compiled pass
per parameter on CPU, multi-tensor (``torch._foreach_*``) kernels otherwise.
"""
from typing import Iterable, List, Tuple

import torch
from torch.optim import Optimizer

from mmext.ops.adagrad_m import adagrad_m_dense_, adagrad_m_rows_
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
        backend: ``'auto'`` (mmext's compiled one-pass updates on CPU where built, else torch),
            ``'compiled'`` or ``'torch'``; see :mod:`mmext.ops.adagrad_m`.
    """

    def __init__(self,
                 params: Iterable,
                 lr: float = 0.05,
                 momentum: float = 0.0,
                 eps: float = 1e-6,
                 skip_zero_rows: bool = True,
                 backend: str = 'auto') -> None:
        if lr <= 0:
            raise ValueError(f'lr must be > 0, got {lr}')
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}')
        if eps <= 0:
            raise ValueError(f'eps must be > 0, got {eps}')
        if backend not in ('auto', 'compiled', 'torch'):
            raise ValueError(f"backend must be 'auto', 'compiled' or 'torch', got {backend!r}")
        super().__init__(params,
                         dict(lr=lr, momentum=momentum, eps=eps, skip_zero_rows=skip_zero_rows))
        self.backend = backend

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
                if g.is_sparse and p.dim() == 2 and g.sparse_dim() == 1:
                    # rows of an item table; uncoalesced: the update sums repeated rows
                    adagrad_m_rows_(p, state['acc'], vel,
                                    g._indices()[0], g._values(), lr, mu, eps, self.backend)
                    continue
                if g.is_sparse:  # any other sparse layout
                    g = g.to_dense()
                if vel is not None and group['skip_zero_rows'] and p.dim() == 2:
                    rows = g.ne(0).any(dim=1).nonzero().flatten()
                    if rows.numel() < p.shape[0]:
                        adagrad_m_rows_(p, state['acc'], vel, rows, g[rows], lr, mu, eps,
                                        self.backend)
                        continue
                dense.append((p, g, state['acc'], vel))
            if dense:
                self._update_dense(dense, lr, mu, eps)
        return loss

    def _update_dense(self, dense: List[Tuple[torch.Tensor, ...]], lr, mu, eps) -> None:
        """The dense parameters of a group: one pass each through :func:`adagrad_m_dense_` (the
        compiled kernel on CPU; GRU4Rec's 5 dense parameters: 70 µs against 125 µs for the
        multi-tensor version), else all at once with multi-tensor kernels.  Past 16 tensors the
        multi-tensor path is kept: per-tensor calls were not measured there."""
        if self.backend != 'torch' and (self.backend == 'compiled' or len(dense) <= 16):
            for p, g, acc, vel in dense:
                adagrad_m_dense_(p, acc, vel, g, lr, mu, eps, self.backend)
            return
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
