"""A ring buffer of past (momentum) features: the negative/positive bank of MoCo-style ITC.

ALBEF (Li et al., NeurIPS 2021, Sec. 3.2) keeps the ``K`` most recent momentum image and text
features (and, for retrieval fine-tuning, their image ids) and contrasts every sample against
``[batch  U  queue]``.  The reference implementations write a whole global batch at the pointer
and ``assert K % batch_size == 0``, which breaks as soon as the last batch of an epoch is smaller
or the number of GPUs changes.  Here a batch of any size is written slot by slot modulo ``K``
(wrap-around); a batch larger than ``K`` keeps its last ``K`` rows.

The queue starts *empty* (``num_filled = 0``) rather than with random unit vectors: entries that
were never written are simply not used, so the contents are deterministic and identical on every
rank without broadcasting a random initialisation.
"""
from typing import Dict, Optional

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ['FeatureQueue']


class FeatureQueue(nn.Module):
    """``K`` slots of several aligned feature fields plus an integer ``idx`` field.

    Args:
        size: Number of slots ``K`` (> 0).
        dims: Feature width of every field, e.g. ``dict(image=256, text=256)``.

    Buffers (saved in checkpoints): ``{field}_queue`` ``(K, D)``, ``idx_queue`` ``(K,)`` (``-1``
    where unused), ``ptr`` (next slot) and ``num_filled``.
    """

    def __init__(self, size: int, dims: Dict[str, int]) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f'FeatureQueue size must be a positive int, got {size!r}')
        if not dims:
            raise ValueError('FeatureQueue needs at least one feature field in dims')
        self.size = size
        self.fields = tuple(dims)
        for name, dim in dims.items():
            self.register_buffer(f'{name}_queue', torch.zeros(size, int(dim)))
        self.register_buffer('idx_queue', torch.full((size, ), -1, dtype=torch.long))
        self.register_buffer('ptr', torch.zeros((), dtype=torch.long))
        self.register_buffer('num_filled', torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.num_filled)

    def get(self, name: str) -> Tensor:
        """The filled slots of field ``name`` (``'idx'`` for the ids), in slot order."""
        return getattr(self, f'{name}_queue')[:int(self.num_filled)]

    @torch.no_grad()
    def enqueue(self, feats: Dict[str, Tensor], idx: Optional[Tensor] = None) -> None:
        """Write one (already gathered, global) batch: ``feats[field]`` ``(n, D)``, ``idx``
        ``(n,)``; slots ``ptr, ptr+1, ...`` modulo ``K`` are overwritten (wrap-around)."""
        if set(feats) != set(self.fields):
            raise KeyError(f'FeatureQueue.enqueue expects fields {sorted(self.fields)}, '
                           f'got {sorted(feats)}')
        n = next(iter(feats.values())).shape[0]
        for name, x in feats.items():
            dim = getattr(self, f'{name}_queue').shape[1]
            if x.dim() != 2 or x.shape[0] != n or x.shape[1] != dim:
                raise ValueError(f"FeatureQueue field '{name}' expects shape ({n}, {dim}), "
                                 f'got {tuple(x.shape)}')
        if idx is None:
            idx = torch.full((n, ), -1, dtype=torch.long, device=self.idx_queue.device)
        if idx.shape != (n, ):
            raise ValueError(f'FeatureQueue idx must have shape ({n},), got {tuple(idx.shape)}')
        if n == 0:
            return
        start = n - min(n, self.size)  # a batch larger than the queue: only its last K rows
        # row j goes to slot (ptr + j) mod K, as if the rows were written one by one
        slots = (int(self.ptr) + torch.arange(start, n, device=self.idx_queue.device)) \
            % self.size
        for name, x in feats.items():
            getattr(self, f'{name}_queue')[slots] = x[start:].detach().to(
                getattr(self, f'{name}_queue').dtype)
        self.idx_queue[slots] = idx[start:].to(self.idx_queue)
        self.ptr.fill_((int(self.ptr) + n) % self.size)
        self.num_filled.fill_(min(self.size, int(self.num_filled) + n))
