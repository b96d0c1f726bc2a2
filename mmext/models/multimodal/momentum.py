"""Momentum (exponential-moving-average) copies of encoders, as in MoCo and ALBEF.

ALBEF (Li et al., NeurIPS 2021, Sec. 3.3) keeps a momentum copy of the unimodal encoders and
projections, ``theta_m <- m * theta_m + (1 - m) * theta`` with ``m = 0.995`` after every step;
their features are the keys of the contrastive loss, the queue entries and the pseudo-targets of
momentum distillation.  Under DDP the online parameters are identical on every rank after each
optimiser step, so the momentum copies stay identical too without any communication.
"""
import copy
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ['make_momentum_copy', 'MomentumPairs']


def make_momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` (no gradient, excluded from the optimiser's updates)."""
    copied = copy.deepcopy(module)
    for p in copied.parameters():
        p.requires_grad_(False)
    return copied


class MomentumPairs:
    """The (online, momentum) module pairs of a model and their EMA update.

    Args:
        pairs: ``(online, momentum)`` modules with identical parameter and buffer layouts.
        momentum: ``m`` of ``theta_m <- m theta_m + (1 - m) theta``; 0.995 in ALBEF/BLIP.

    Not an ``nn.Module`` on purpose: the modules are owned (and saved) by the model that holds
    them; this object only remembers which are paired.
    """

    def __init__(self, pairs: Sequence[Tuple[nn.Module, nn.Module]], momentum: float = 0.995):
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f'momentum must be in [0, 1], got {momentum!r}')
        self.pairs: List[Tuple[nn.Module, nn.Module]] = list(pairs)
        self.momentum = float(momentum)
        for online, ema in self.pairs:
            n_online = [tuple(p.shape) for p in online.parameters()]
            n_ema = [tuple(p.shape) for p in ema.parameters()]
            if n_online != n_ema:
                raise ValueError(f'momentum pair {type(online).__name__} / {type(ema).__name__} '
                                 'has different parameter shapes')

    @torch.no_grad()
    def copy_params(self) -> None:
        """Start the momentum copies equal to the online modules."""
        for online, ema in self.pairs:
            for p, p_m in zip(online.parameters(), ema.parameters()):
                p_m.copy_(p)

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step of every momentum parameter towards its online parameter."""
        m = self.momentum
        for online, ema in self.pairs:
            for p, p_m in zip(online.parameters(), ema.parameters()):
                p_m.mul_(m).add_(p.detach(), alpha=1.0 - m)
