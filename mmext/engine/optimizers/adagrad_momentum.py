"""Adagrad with momentum, the optimiser of the official GRU4Rec code (Hidasi et al., ICLR 2016;
"adagrad + momentum" of its Theano and PyTorch releases, ``IndexedAdagradM``).

Per parameter ``p`` with gradient ``g`` (Duchi et al. 2011 for the accumulator):

    a ← a + g²;   v ← μ v − lr · g / sqrt(a + ε);   p ← p + v        (μ = 0: plain Adagrad step)

The official code updates the item tables *by index*: only the rows of the items in the batch
(and its samples) change, their accumulators and velocities included.  With ``skip_zero_rows``
(default) a 2-D parameter's rows whose gradient is exactly zero are left untouched — accumulator,
velocity and value — which reproduces that, since an item absent from a step has a zero row.
"""
from typing import Iterable

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
        skip_zero_rows: emulate the official index-only updates of item tables.
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
            for p in group['params']:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError('AdagradM does not take sparse gradients')
                state = self.state[p]
                if not state:
                    state['acc'] = torch.zeros_like(p)
                    if mu > 0:
                        state['velocity'] = torch.zeros_like(p)
                acc = state['acc']
                if group['skip_zero_rows'] and p.dim() == 2:
                    rows = g.ne(0).any(dim=1).nonzero().flatten()
                    if rows.numel() < p.shape[0]:
                        self._update(p, g, acc, state.get('velocity'), lr, mu, eps, rows)
                        continue
                self._update(p, g, acc, state.get('velocity'), lr, mu, eps, None)
        return loss

    @staticmethod
    def _update(p, g, acc, vel, lr, mu, eps, rows) -> None:
        if rows is not None:  # index-only update of the touched rows
            g_r = g[rows]
            a_r = acc[rows] + g_r * g_r
            acc[rows] = a_r
            step = g_r / (a_r + eps).sqrt()
            if vel is not None and mu > 0:
                v_r = mu * vel[rows] - lr * step
                vel[rows] = v_r
                p[rows] += v_r
            else:
                p[rows] -= lr * step
            return
        acc.addcmul_(g, g)
        step = g / (acc + eps).sqrt()
        if vel is not None and mu > 0:
            vel.mul_(mu).sub_(lr * step)
            p.add_(vel)
        else:
            p.sub_(lr * step)
