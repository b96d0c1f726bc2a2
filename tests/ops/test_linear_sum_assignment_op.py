"""mmext.ops.linear_sum_assignment: every backend optimal on every block, like scipy; ``'auto'``
takes the compiled kernel for CPU costs when it is built and scipy otherwise."""
import importlib

import numpy as np
import pytest
import torch
from lsa_problems import KINDS, random_lsa_batches
from scipy.optimize import linear_sum_assignment as scipy_lsa

from mmext.ops import linear_sum_assignment
from mmext.utils.ext_loader import ext_built

needs_ext = pytest.mark.skipif(not ext_built(), reason='mmext was built without ops')
# the package attribute is the function; the module is where the backend choice is made
lsa_module = importlib.import_module('mmext.ops.linear_sum_assignment')


def _check(cost: torch.Tensor, num_rows: torch.Tensor, num_cols: torch.Tensor,
           backend: str) -> None:
    match = linear_sum_assignment(cost, num_rows, num_cols, backend=backend)
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
            r_ref, c_ref = scipy_lsa(sub)
            total, ref = sub[rows, cols].sum(), sub[r_ref, c_ref].sum()
            assert abs(total - ref) <= 1e-9 * max(1.0, np.abs(sub).sum()), (b, total, ref)


@needs_ext
@pytest.mark.parametrize('kind', KINDS)
def test_random_batches_are_optimal(kind):
    """4 kinds x 12 batches x 64 images: 3072 problems, with 0/1 rows or columns, Q > G, Q < G."""
    for cost, num_rows, num_cols in random_lsa_batches(kind, seed=100 + KINDS.index(kind)):
        _check(cost, num_rows, num_cols, 'compiled')


@pytest.mark.parametrize('kind', KINDS)
def test_scipy_backend_random_batches(kind):
    """The fallback on the same kinds of padded batches (fewer: scipy is the reference)."""
    for cost, num_rows, num_cols in random_lsa_batches(
            kind, seed=200 + KINDS.index(kind), num_batches=3):
        _check(cost, num_rows, num_cols, 'scipy')


@pytest.mark.parametrize('backend', ['auto', 'scipy', pytest.param('compiled', marks=needs_ext)])
@pytest.mark.parametrize('shape', [(3, 300, 50), (3, 20, 100), (2, 40, 40), (2, 1, 30), (2, 30, 1)])
def test_detr_sizes_agree_with_scipy_exactly(shape, backend):
    """Random float costs have one optimum, so the matching itself equals scipy's."""
    cost = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    B, R, C = shape
    match = linear_sum_assignment(cost, torch.full((B, ), R), torch.full((B, ), C), backend=backend)
    for b in range(B):
        rows, cols = scipy_lsa(cost[b].double().numpy())
        expected = torch.full((R, ), -1, dtype=torch.long)
        expected[torch.from_numpy(rows)] = torch.from_numpy(cols)
        assert torch.equal(match[b], expected)


@needs_ext
def test_auto_is_the_compiled_kernel_on_cpu(monkeypatch):
    """``'auto'`` on CPU costs returns exactly the compiled result, also where ties allow several
    optimal matchings, and never calls scipy."""
    monkeypatch.setattr(lsa_module, '_scipy', lambda *a: pytest.fail('scipy called'))
    for kind in ('int_ties', 'float'):
        for cost, num_rows, num_cols in random_lsa_batches(kind, seed=7, num_batches=4):
            got = linear_sum_assignment(cost, num_rows, num_cols)
            assert torch.equal(got, linear_sum_assignment(cost, num_rows, num_cols, 'compiled'))


def test_auto_falls_back_to_scipy_without_the_kernel(monkeypatch):
    """Without the compiled library ``'auto'`` is exactly the scipy backend."""
    monkeypatch.setattr(lsa_module, 'ext_available', lambda *a, **k: False)
    monkeypatch.setattr(lsa_module, '_compiled', lambda *a: pytest.fail('kernel called'))
    for cost, num_rows, num_cols in random_lsa_batches('int_ties', seed=8, num_batches=4):
        got = linear_sum_assignment(cost, num_rows, num_cols)
        assert torch.equal(got, linear_sum_assignment(cost, num_rows, num_cols, 'scipy'))


@pytest.mark.parametrize('backend', ['scipy', pytest.param('compiled', marks=needs_ext)])
def test_padding_is_never_read(backend):
    cost = torch.rand(2, 6, 4, dtype=torch.float64)
    cost[1, :, 2:] = float('nan')
    cost[1, 5:] = float('inf')
    match = linear_sum_assignment(cost, torch.tensor([6, 5]), torch.tensor([4, 2]), backend)
    assert (match[0] >= 0).sum() == 4 and (match[1] >= 0).sum() == 2


@needs_ext
def test_bad_inputs_raise_clear_errors():
    cost = torch.rand(2, 3, 3)
    with pytest.raises(RuntimeError, match='exceeds the padded'):
        linear_sum_assignment(cost, torch.tensor([4, 1]), torch.tensor([3, 3]), 'compiled')
    with pytest.raises(RuntimeError, match='one entry per image'):
        linear_sum_assignment(cost, torch.tensor([3]), torch.tensor([3, 3]), 'compiled')
    with pytest.raises(RuntimeError, match='3 dimensions'):
        linear_sum_assignment(cost[0], torch.tensor([3]), torch.tensor([3]), 'compiled')


def test_unknown_backend():
    with pytest.raises(ValueError, match='backend'):
        linear_sum_assignment(torch.rand(1, 2, 2), torch.tensor([2]), torch.tensor([2]), 'torch')
