"""Random assignment problems for the exactness tests of mmext's linear-sum-assignment solvers."""
from typing import Iterator, Tuple

import torch

#: Cost kinds: plain floats, integer costs with many tied optima, differences near float32
#: resolution, and large float64 values.
KINDS = ('float', 'int_ties', 'tiny_range', 'large_float64')


def random_lsa_batches(
        kind: str,
        seed: int,
        num_batches: int = 12,
        batch: int = 64) -> Iterator[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(cost [B, R, C], num_rows [B], num_cols [B])`` padded batches.

    ``R`` and ``C`` are drawn from 1..12 per batch; per-image sizes cover 0 and 1 columns, 1 row,
    ``R > C`` and ``R < C`` (the first four images pin the corner cases).
    """
    if kind not in KINDS:
        raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
    g = torch.Generator().manual_seed(seed)
    for _ in range(num_batches):
        R, C = (int(torch.randint(1, 13, (1, ), generator=g)) for _ in range(2))
        if kind == 'float':
            cost = torch.randn(batch, R, C, generator=g)
        elif kind == 'int_ties':
            cost = torch.randint(0, 3, (batch, R, C), generator=g).float()
        elif kind == 'tiny_range':
            cost = 1 + torch.randint(0, 5, (batch, R, C), generator=g).float() * 1e-7
        else:
            cost = torch.rand(batch, R, C, generator=g, dtype=torch.float64) * 1e6
        num_rows = torch.randint(0, R + 1, (batch, ), generator=g)
        num_cols = torch.randint(0, C + 1, (batch, ), generator=g)
        num_rows[:4] = torch.tensor([R, R, 1, 1]).clamp(max=R)
        num_cols[:4] = torch.tensor([0, 1, C, 1]).clamp(max=C)
        yield cost, num_rows, num_cols
