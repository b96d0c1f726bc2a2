"""mmext's compiled batched linear sum assignment: optimal on every block, like scipy."""
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from lsa_problems import KINDS, random_lsa_batches

from mmext.ops import compiled_linear_sum_assignment
from mmext.utils.ext_loader import ext_built

pytestmark = pytest.mark.skipif(not ext_built(), reason='mmext was built without ops')


def _check(cost: torch.Tensor, num_rows: torch.Tensor, num_cols: torch.Tensor) -> None:
    match = compiled_linear_sum_assignment(cost, num_rows, num_cols)
    assert match.shape == cost.shape[:2] and match.dtype == torch.long
    c = cost.double().numpy()
    for b in range(cost.shape[0]):
        nr, nc = int(num_rows[b]), int(num_cols[b])
        sub = c[b, :nr, :nc]
        rows = (match[b, :nr] >= 0).nonzero().flatten().numpy()
        cols = match[b, rows].numpy()
        assert (match[b, nr:] == -1).all()  # padding rows stay unmatched
        assert len(rows) == min(nr, nc) and len(set(cols.tolist())) == len(cols)
        assert ((cols >= 0) & (cols < nc)).all()
        if len(rows):
            r_ref, c_ref = linear_sum_assignment(sub)
            total, ref = sub[rows, cols].sum(), sub[r_ref, c_ref].sum()
            assert abs(total - ref) <= 1e-9 * max(1.0, np.abs(sub).sum()), (b, total, ref)


@pytest.mark.parametrize('kind', KINDS)
def test_random_batches_are_optimal(kind):
    """4 kinds x 12 batches x 64 images: 3072 problems, with 0/1 rows or columns, Q > G, Q < G."""
    for cost, num_rows, num_cols in random_lsa_batches(kind, seed=100 + KINDS.index(kind)):
        _check(cost, num_rows, num_cols)


@pytest.mark.parametrize('shape', [(3, 300, 50), (3, 20, 100), (2, 40, 40), (2, 1, 30),
                                   (2, 30, 1)])
def test_detr_sizes_agree_with_scipy_exactly(shape):
    """Random float costs have one optimum, so the matching itself equals scipy's."""
    cost = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    B, R, C = shape
    match = compiled_linear_sum_assignment(cost, torch.full((B, ), R), torch.full((B, ), C))
    for b in range(B):
        rows, cols = linear_sum_assignment(cost[b].double().numpy())
        expected = torch.full((R, ), -1, dtype=torch.long)
        expected[torch.from_numpy(rows)] = torch.from_numpy(cols)
        assert torch.equal(match[b], expected)


def test_padding_is_never_read():
    cost = torch.rand(2, 6, 4, dtype=torch.float64)
    cost[1, :, 2:] = float('nan')
    cost[1, 5:] = float('inf')
    match = compiled_linear_sum_assignment(cost, torch.tensor([6, 5]), torch.tensor([4, 2]))
    assert (match[0] >= 0).sum() == 4 and (match[1] >= 0).sum() == 2


def test_bad_inputs_raise_clear_errors():
    cost = torch.rand(2, 3, 3)
    with pytest.raises(RuntimeError, match='exceeds the padded'):
        compiled_linear_sum_assignment(cost, torch.tensor([4, 1]), torch.tensor([3, 3]))
    with pytest.raises(RuntimeError, match='one entry per image'):
        compiled_linear_sum_assignment(cost, torch.tensor([3]), torch.tensor([3, 3]))
    with pytest.raises(RuntimeError, match='3 dimensions'):
        compiled_linear_sum_assignment(cost[0], torch.tensor([3]), torch.tensor([3]))
