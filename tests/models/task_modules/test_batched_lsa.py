"""Exactness of the batched shortest-augmenting-path solver against scipy."""
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from lsa_problems import KINDS, random_lsa_batches

from mmext.models.task_modules.assigners import batched_linear_sum_assignment


def _check_batch(cost: torch.Tensor, num_preds, num_gts) -> int:
    """Assert optimality and validity image by image; return the number of images checked."""
    pairs = batched_linear_sum_assignment(cost, num_gts, num_preds)
    assert len(pairs) == cost.shape[0]
    c = cost.double().numpy()
    for b, (rows, cols) in enumerate(pairs):
        sub = c[b, :int(num_preds[b]), :int(num_gts[b])]
        r_ref, c_ref = linear_sum_assignment(sub)
        rows, cols = rows.numpy(), cols.numpy()
        assert len(rows) == len(r_ref) == min(sub.shape)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert (rows >= 0).all() and (rows < sub.shape[0]).all()
        assert (cols >= 0).all() and (cols < sub.shape[1]).all()
        assert (np.diff(rows) > 0).all()  # sorted by query, like scipy
        total, ref = sub[rows, cols].sum(), sub[r_ref, c_ref].sum()
        scale = max(1.0, np.abs(sub).sum())
        assert abs(total - ref) <= 1e-9 * scale, (b, total, ref)
    return cost.shape[0]


@pytest.mark.parametrize('kind', KINDS)
def test_random_batches_match_scipy(kind):
    """4 kinds x 12 batches x 64 images = 3072 random problems."""
    checked = sum(_check_batch(cost, num_preds, num_gts)
                  for cost, num_preds, num_gts in random_lsa_batches(kind, seed=KINDS.index(kind)))
    assert checked == 768


@pytest.mark.parametrize('shape', [(3, 300, 50), (3, 20, 100), (4, 40, 40), (2, 1, 30),
                                   (2, 30, 1)])
def test_full_size_shapes(shape):
    cost = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    B = shape[0]
    _check_batch(cost, [shape[1]] * B, [shape[2]] * B)


def test_default_counts_and_padding_ignored():
    cost = torch.rand(2, 6, 4, dtype=torch.float64)
    cost[1, :, 2:] = float('nan')  # padding: never read
    pairs = batched_linear_sum_assignment(cost, num_gts=[4, 2])
    assert len(pairs[0][0]) == 4 and len(pairs[1][0]) == 2
    full = batched_linear_sum_assignment(cost[:1])
    assert torch.equal(full[0][1], pairs[0][1])


def test_zero_targets_everywhere():
    pairs = batched_linear_sum_assignment(torch.zeros(3, 5, 0))
    assert all(len(r) == 0 and len(c) == 0 for r, c in pairs)


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_nonfinite_raises_with_image_index(bad):
    cost = torch.rand(3, 4, 4)
    cost[2, 1, 3] = bad
    with pytest.raises(ValueError, match=r'image\(s\) \[2\]'):
        batched_linear_sum_assignment(cost)


def test_huge_finite_float64_is_accepted():
    cost = torch.rand(2, 5, 3, dtype=torch.float64) * 1e307  # the sum overflows, entries don't
    _check_batch(cost, [5, 5], [3, 3])


def test_bad_shape():
    with pytest.raises(ValueError, match='cost must be'):
        batched_linear_sum_assignment(torch.rand(4, 4))


@pytest.mark.cuda
def test_cuda_matches_scipy():
    g = torch.Generator().manual_seed(5)
    cost = torch.randint(0, 4, (16, 30, 12), generator=g).float()
    num_preds = torch.randint(0, 31, (16, ), generator=g)
    num_gts = torch.randint(0, 13, (16, ), generator=g)
    pairs = batched_linear_sum_assignment(cost.cuda(), num_gts.cuda(), num_preds.cuda())
    assert all(r.is_cuda and c.is_cuda for r, c in pairs)
    for b, (rows, cols) in enumerate(pairs):
        sub = cost[b, :num_preds[b], :num_gts[b]].double().numpy()
        r_ref, c_ref = linear_sum_assignment(sub)
        assert abs(sub[rows.cpu().numpy(), cols.cpu().numpy()].sum() - sub[r_ref, c_ref].sum()) \
            <= 1e-9 * max(1.0, np.abs(sub).sum())
