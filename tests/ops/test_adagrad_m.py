"""mmext.ops.adagrad_m: the compiled one-pass AdagradM updates against the torch reference."""
import pytest
import torch

from mmext.ops.adagrad_m import adagrad_m_dense_, adagrad_m_rows_
from mmext.utils.ext_loader import ext_built

pytestmark = pytest.mark.skipif(not ext_built(), reason='mmext was built without ops')


def _state(shape, momentum, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    param = torch.randn(*shape, generator=g, dtype=dtype)
    acc = torch.rand(*shape, generator=g, dtype=dtype)
    vel = torch.randn(*shape, generator=g, dtype=dtype) if momentum > 0 else None
    return param, acc, vel


def _clone(state):
    return [None if t is None else t.clone() for t in state]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('momentum', [0.0, 0.7])
def test_rows_equal_torch_with_repeated_rows(dtype, momentum):
    """A GRU4Rec-sized step: 576 gradient rows (targets + samples, many repeats) of a 1,683-row
    table; untouched rows keep value, accumulator and velocity."""
    n, d = 1683, 100
    g = torch.Generator().manual_seed(1)
    indices = torch.cat(
        [torch.randint(0, n, (32, ), generator=g),
         torch.randint(0, 40, (544, ), generator=g)])  # heavy repeats
    values = torch.randn(len(indices), d, generator=g, dtype=dtype)
    ours, ref = _state((n, d), momentum, dtype), None
    ref = _clone(ours)
    before = _clone(ours)
    for _ in range(3):  # the accumulators grow: later steps use what earlier ones wrote
        adagrad_m_rows_(*ours, indices, values, 0.05, momentum, 1e-6, backend='compiled')
        adagrad_m_rows_(*ref, indices, values, 0.05, momentum, 1e-6, backend='torch')
    # rows repeated ~14 times: fp32 sums in another order differ in the last bits
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(ours, ref):
        if a is not None:
            torch.testing.assert_close(a, b, **tol)
    untouched = torch.ones(n, dtype=torch.bool)
    untouched[indices] = False
    assert untouched.any()
    for a, b in zip(ours, before):
        if a is not None:
            assert torch.equal(a[untouched], b[untouched])


@pytest.mark.parametrize('momentum', [0.0, 0.5])
def test_rows_without_repeats_and_dense_equal_torch(momentum):
    """Equal to rounding (torch's own kernels may fuse a multiply-add where ours do not)."""
    n, d = 50, 7
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(2))[:20]
    values = torch.randn(20, d)
    ours = _state((n, d), momentum, torch.float32)
    ref = _clone(ours)
    adagrad_m_rows_(*ours, rows, values, 0.1, momentum, 1e-6, backend='compiled')
    adagrad_m_rows_(*ref, rows, values, 0.1, momentum, 1e-6, backend='torch')
    for a, b in zip(ours, ref):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)

    grad = torch.randn(3, 5, 11)  # any shape
    ours = _state((3, 5, 11), momentum, torch.float32, seed=3)
    ref = _clone(ours)
    adagrad_m_dense_(*ours, grad, 0.1, momentum, 1e-6, backend='compiled')
    adagrad_m_dense_(*ref, grad, 0.1, momentum, 1e-6, backend='torch')
    for a, b in zip(ours, ref):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_dense_result_does_not_depend_on_threads():
    grad = torch.randn(300_001, dtype=torch.float64)
    first = _state((300_001, ), 0.9, torch.float64)
    second = _clone(first)
    threads = torch.get_num_threads()
    try:
        for state, n in ((first, 1), (second, 2)):
            torch.set_num_threads(n)
            adagrad_m_dense_(*state, grad, 0.01, 0.9, 1e-8, backend='compiled')
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    ref = _state((300_001, ), 0.9, torch.float64)
    adagrad_m_dense_(*ref, grad, 0.01, 0.9, 1e-8, backend='torch')
    for a, b in zip(first, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_bad_inputs_name_the_problem():
    param, acc, _ = _state((10, 4), 0.0, torch.float32)
    values = torch.randn(2, 4)
    with pytest.raises(RuntimeError, match='index 10 at position 1 is out of range'):
        adagrad_m_rows_(
            param, acc, None, torch.tensor([3, 10]), values, 0.1, 0.0, 1e-6, backend='compiled')
    with pytest.raises(RuntimeError, match='values must be'):
        adagrad_m_rows_(
            param,
            acc,
            None,
            torch.tensor([3, 4]),
            torch.randn(2, 5),
            0.1,
            0.0,
            1e-6,
            backend='compiled')
    with pytest.raises(RuntimeError, match='must share a dtype'):
        adagrad_m_rows_(
            param,
            acc.double(),
            None,
            torch.tensor([3, 4]),
            values,
            0.1,
            0.0,
            1e-6,
            backend='compiled')
    with pytest.raises(RuntimeError, match='vel must be given exactly when momentum > 0'):
        adagrad_m_dense_(param, acc, None, torch.randn(10, 4), 0.1, 0.5, 1e-6, backend='compiled')
    with pytest.raises(RuntimeError, match='indices must be int64'):
        adagrad_m_rows_(
            param,
            acc,
            None,
            torch.tensor([3, 4], dtype=torch.int32),
            values,
            0.1,
            0.0,
            1e-6,
            backend='compiled')
    with pytest.raises(ValueError, match="backend must be 'auto', 'compiled' or 'torch'"):
        adagrad_m_dense_(param, acc, None, torch.randn(10, 4), 0.1, 0.0, 1e-6, backend='fast')


def test_updates_count_as_in_place_writes_for_autograd():
    """A tensor saved for backward and then updated by the kernel is caught, as after add_."""
    param = torch.randn(4, 3, requires_grad=True)
    acc = torch.zeros(4, 3)
    out = (param * param).sum()  # saves param
    adagrad_m_dense_(
        param.detach(), acc, None, torch.ones(4, 3), 0.1, 0.0, 1e-6, backend='compiled')
    version = param._version
    adagrad_m_rows_(
        param.detach(),
        acc,
        None,
        torch.tensor([1]),
        torch.ones(1, 3),
        0.1,
        0.0,
        1e-6,
        backend='compiled')
    assert param._version > version
    with pytest.raises(RuntimeError, match='modified by an inplace operation'):
        out.backward()
