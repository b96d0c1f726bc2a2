"""mmext's multi-scale deformable attention kernels against the grid_sample references (ours and
mmcv's ``multi_scale_deformable_attn_pytorch``): outputs and the gradients of value, sampling
locations and attention weights; gradcheck; determinism; input errors; the fallback without the
compiled library; CUDA against the CPU kernel (marked ``cuda``)."""
import sys
from typing import List, Tuple

import pytest
import torch

import mmext.ops.multi_scale_deform_attn as msda
from mmext.ops import multi_scale_deformable_attn, multi_scale_deformable_attn_torch
from mmext.utils.ext_loader import ext_available

KERNEL = ext_available('_ext', ('ms_deform_attn_fwd', 'ms_deform_attn_bwd'))
needs_kernel = pytest.mark.skipif(not KERNEL, reason='mmext._ext without ms_deform_attn')


def make_inputs(shapes: List[Tuple[int, int]],
                bs: int = 2,
                queries: int = 5,
                heads: int = 2,
                dims: int = 8,
                points: int = 3,
                dtype=torch.float64,
                low: float = -0.2,
                high: float = 1.2,
                seed: int = 0):
    """Random inputs; locations uniform in [low, high] (outside the map beyond [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    spatial = torch.tensor(shapes, dtype=torch.long)
    sizes = spatial.prod(1)
    start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    levels = len(shapes)
    value = torch.randn(bs, int(sizes.sum()), heads, dims, generator=g, dtype=torch.float64)
    loc = torch.rand(bs, queries, heads, levels, points, 2, generator=g, dtype=torch.float64)
    loc = low + (high - low) * loc
    attn = torch.rand(bs, queries, heads, levels, points, generator=g, dtype=torch.float64)
    attn = attn / attn.sum((-1, -2), keepdim=True)
    return [t.to(dtype) for t in (value, )] + [spatial, start] + [t.to(dtype) for t in (loc, attn)]


def run(fn, inputs, grad_out=None):
    """Output and the gradients of value, sampling_locations, attention_weights."""
    value, spatial, start, loc, attn = (t.clone() for t in inputs)
    for t in (value, loc, attn):
        t.requires_grad_()
    out = fn(value, spatial, start, loc, attn)
    if grad_out is None:
        grad_out = torch.randn(
            out.shape, generator=torch.Generator().manual_seed(1),
            dtype=torch.float64).to(out.dtype)
    out.backward(grad_out.to(out.device))
    return out.detach(), value.grad, loc.grad, attn.grad


def mmcv_reference():
    mmcv_msda = pytest.importorskip('mmcv.ops.multi_scale_deform_attn')
    return lambda v, s, i, loc, a: mmcv_msda.multi_scale_deformable_attn_pytorch(v, s, loc, a)


CASES = [
    dict(shapes=[(6, 9)]),  # one level, non-square
    dict(shapes=[(8, 8), (4, 4), (2, 2), (1, 1)]),
    dict(shapes=[(7, 3), (1, 5), (3, 11)], heads=3, dims=5, points=4, queries=9),
    dict(shapes=[(5, 4), (3, 2)], bs=1, heads=1, dims=33, points=1, queries=17),
]


@needs_kernel
@pytest.mark.parametrize('case', CASES, ids=lambda c: str(c['shapes']))
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_cpu_kernel_matches_references(case, dtype, tol):
    inputs = make_inputs(dtype=dtype, **case)
    ours = run(multi_scale_deformable_attn, inputs)
    refs = [run(multi_scale_deformable_attn_torch, inputs), run(mmcv_reference(), inputs)]
    for ref in refs:
        for name, a, b in zip(('out', 'value', 'loc', 'attn'), ours, ref):
            assert a.dtype == dtype and a.shape == b.shape, name
            torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=name)


@needs_kernel
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_locations_on_borders_and_pixel_centres(dtype, tol):
    """Locations k / 16 (exact in binary): map edges 0 and 1, pixel centres and pixel edges, and
    just outside (-1/16, 17/16); x * W - 0.5 is exact, so both sides floor the same value."""
    value, spatial, start, loc, attn = make_inputs([(8, 4), (2, 16)], points=4, dtype=dtype)
    grid = torch.arange(-1, 18, dtype=dtype) / 16
    g = torch.Generator().manual_seed(3)
    loc = grid[torch.randint(len(grid), loc.shape, generator=g)]
    loc[0, 0, 0, 0, :, 0] = torch.tensor([0., 1., 0., 1.], dtype=dtype)  # the four corners
    loc[0, 0, 0, 0, :, 1] = torch.tensor([0., 0., 1., 1.], dtype=dtype)
    inputs = [value, spatial, start, loc, attn]
    ours = run(multi_scale_deformable_attn, inputs)
    for ref in (run(multi_scale_deformable_attn_torch, inputs), run(mmcv_reference(), inputs)):
        for name, a, b in zip(('out', 'value', 'loc', 'attn'), ours, ref):
            torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=name)


@needs_kernel
def test_all_points_outside():
    inputs = make_inputs([(4, 5), (2, 3)], low=1.5, high=3.0)
    out, gv, gl, ga = run(multi_scale_deformable_attn, inputs)
    for t in (out, gv, gl, ga):
        assert torch.count_nonzero(t) == 0


@needs_kernel
def test_gradcheck():
    value, spatial, start, loc, attn = make_inputs([(3, 4), (2, 2)],
                                                   bs=1,
                                                   queries=2,
                                                   heads=2,
                                                   dims=3,
                                                   points=2,
                                                   low=0.05,
                                                   high=0.95)
    for t in (value, loc, attn):
        t.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, lo, a: multi_scale_deformable_attn(v, spatial, start, lo, a), (value, loc, attn),
        eps=1e-6,
        atol=1e-7)


@needs_kernel
def test_backward_deterministic_across_runs_and_threads():
    inputs = make_inputs([(20, 30), (10, 15), (5, 8)],
                         bs=2,
                         queries=64,
                         heads=4,
                         dims=32,
                         points=4,
                         dtype=torch.float32,
                         low=0.0,
                         high=1.0)
    # Few distinct locations: many queries scatter into the same keys.
    inputs[3] = (inputs[3] * 4).round() / 4
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 2, 3):
            torch.set_num_threads(n)
            results.append(run(multi_scale_deformable_attn, inputs))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@needs_kernel
@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == 'DEFAULT', reason='no AVX2: one kernel build')
@pytest.mark.parametrize('dims', [32, 24])  # 32: the rows-in-registers variant
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_avx2_and_baseline_builds_are_bit_identical(dims, dtype, monkeypatch):
    """The AVX2 build of the CPU kernels (no FMA) and the baseline one, forced with
    MMEXT_MSDA_CPU_KERNEL=baseline, give the same bits, on 1 and 2 threads."""
    inputs = make_inputs([(13, 21), (7, 11), (4, 6), (2, 3)],
                         bs=2,
                         queries=37,
                         heads=3,
                         dims=dims,
                         points=4,
                         dtype=dtype)
    # Some repeated locations (many scatters into the same keys), the rest anywhere, in the
    # map or out of it.
    inputs[3][:, ::2] = (inputs[3][:, ::2] * 4).round() / 4
    threads = torch.get_num_threads()
    results = {}
    try:
        for kernel in ('default', 'baseline'):
            if kernel == 'baseline':
                monkeypatch.setenv('MMEXT_MSDA_CPU_KERNEL', 'baseline')
            for n in (1, 2):
                torch.set_num_threads(n)
                results[kernel, n] = run(multi_scale_deformable_attn, inputs)
    finally:
        torch.set_num_threads(threads)
    first = results['default', 1]
    for key, other in results.items():
        for name, a, b in zip(('out', 'value', 'loc', 'attn'), first, other):
            assert torch.equal(a, b), (key, name)
    # and the kernels are right (both builds are the same numbers)
    ref = run(multi_scale_deformable_attn_torch, inputs)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for name, a, b in zip(('out', 'value', 'loc', 'attn'), first, ref):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=name)


@needs_kernel
@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='mmap reuse is Linux-only')
def test_backward_reuses_a_freed_grad_value_mapping(monkeypatch):
    """A grad_value of 8 MiB or more gets its own mapping, which the next backward reuses once
    the tensor is freed (MMEXT_MSDA_CPU_REUSE=0 turns that off).  The reused memory still holds
    the old numbers, and the results are the bits of a fresh buffer, on 1, 2 and 3 threads (32
    (image, head, level) tasks: uneven on 3); a grad_value still alive is never reused."""
    ext = msda.load_ext('_ext', msda._FUNCS)
    # 2 images x 12,000 keys x 8 heads x 32 channels, float32: 23.4 MiB; then 9,600 keys: 18.8 MiB
    big = make_inputs([(80, 120), (40, 60)],
                      bs=2,
                      queries=50,
                      heads=8,
                      dims=32,
                      points=4,
                      dtype=torch.float32,
                      low=0.0,
                      high=1.0)
    small = make_inputs([(64, 120), (32, 60)],
                        bs=2,
                        queries=50,
                        heads=8,
                        dims=32,
                        points=4,
                        dtype=torch.float32,
                        low=-0.1,
                        high=1.1,
                        seed=1)
    for inputs in (big, small):
        inputs[3][:, ::2] = (inputs[3][:, ::2] * 8).round() / 8  # many scatters into one key

    def backward(inputs):
        value, spatial, start, loc, attn = inputs
        grad_out = torch.randn(
            value.shape[0],
            loc.shape[1],
            value.shape[2] * value.shape[3],
            generator=torch.Generator().manual_seed(2))
        return ext.ms_deform_attn_bwd(grad_out, value, spatial, start, loc, attn, False)

    def same(grads, others):  # grad_value, grad_loc, grad_attn
        return all(torch.equal(a, b) for a, b in zip(grads, others))

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setenv('MMEXT_MSDA_CPU_REUSE', '0')
        fresh = {id(inputs): backward(inputs) for inputs in (big, small)}
        monkeypatch.delenv('MMEXT_MSDA_CPU_REUSE')
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            old = backward(big)
            old[0].fill_(float('nan'))  # what a reused mapping holds, unless overwritten
            address = old[0].data_ptr()
            live = backward(small)
            assert live[0].data_ptr() != address  # `old` is alive: a new mapping
            del old  # now its mapping is kept ...
            again = backward(big)
            assert again[0].data_ptr() == address  # ... and reused
            assert same(live, fresh[id(small)]) and same(again, fresh[id(big)]), n
            del again
            smaller = backward(small)  # fits in the kept mapping (at most twice its size)
            assert smaller[0].data_ptr() == address
            assert same(smaller, fresh[id(small)]), n
    finally:
        torch.set_num_threads(threads)


@needs_kernel
def test_inference_path_and_non_contiguous_inputs():
    value, spatial, start, loc, attn = make_inputs([(5, 6), (3, 3)], queries=7)
    ref = multi_scale_deformable_attn_torch(value, spatial, start, loc, attn)
    # The same numbers laid out differently (heads and queries swapped in memory).
    loc_nc = loc.transpose(1, 2).contiguous().transpose(1, 2)
    attn_nc = attn.transpose(1, 2).contiguous().transpose(1, 2)
    with torch.no_grad():
        out = multi_scale_deformable_attn(value, spatial, start, loc_nc, attn_nc)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)


def test_falls_back_without_the_library(monkeypatch):
    inputs = make_inputs([(4, 4), (2, 3)])
    ref = run(multi_scale_deformable_attn_torch, inputs)
    monkeypatch.setattr(msda, 'ext_available', lambda *a, **k: False)
    monkeypatch.setattr(msda, 'load_ext', lambda *a, **k: pytest.fail('library used'))
    for a, b in zip(run(multi_scale_deformable_attn, inputs), ref):
        assert torch.equal(a, b)


def test_half_on_cpu_takes_the_reference():
    value, spatial, start, loc, attn = make_inputs([(4, 4)], dtype=torch.bfloat16)
    out = multi_scale_deformable_attn(value, spatial, start, loc, attn)
    assert torch.equal(out, multi_scale_deformable_attn_torch(value, spatial, start, loc, attn))


@pytest.mark.parametrize('change,error,match', [
    (lambda v, s, i, lo, a:
     (v[:, :-1], s, i, lo, a), ValueError, r'value has 19 keys .* sum to 20 = sum\(H \* W\)'),
    (lambda v, s, i, lo, a: (v, s, i + 1, lo, a), ValueError, r'level_start_index\[0\] = 1'),
    (lambda v, s, i, lo, a:
     (v, s, i[:1], lo, a), ValueError, r'level_start_index must be \[num_levels\] = \[2\]'),
    (lambda v, s, i, lo, a: (v, s.int(), i, lo, a), TypeError, 'spatial_shapes must be int64'),
    (lambda v, s, i, lo, a: (v, s, i, lo.float(), a), TypeError,
     'sampling_locations has dtype torch.float32, value has torch.float64'),
    (lambda v, s, i, lo, a: (v, s, i, lo, a.float()), TypeError, 'attention_weights has'),
    (lambda v, s, i, lo, a:
     (v, s, i, lo[..., :1, :, :], a), ValueError, 'sampling_locations must be'),
    (lambda v, s, i, lo, a: (v, s, i, lo, a[..., :1]), ValueError, 'attention_weights must be'),
    (lambda v, s, i, lo, a: (v[0], s, i, lo, a), ValueError, 'value must be'),
    (lambda v, s, i, lo, a:
     (v, s.new_tensor([[4, 4], [0, 3]]), i, lo, a), ValueError, r'spatial_shapes\[1\] = \(0, 3\)'),
    (lambda v, s, i, lo, a:
     (v, s, i, lo.to('meta'), a), ValueError, 'sampling_locations is on meta'),
])
def test_input_errors_name_the_problem(change, error, match):
    inputs = make_inputs([(4, 4), (2, 2)])
    with pytest.raises(error, match=match):
        multi_scale_deformable_attn(*change(*inputs))


@needs_kernel
def test_compiled_entry_points_check_their_inputs():
    ext = msda.load_ext('_ext', msda._FUNCS)
    value, spatial, start, loc, attn = make_inputs([(4, 4)])
    with pytest.raises(RuntimeError, match='attention_weights must be'):
        ext.ms_deform_attn_fwd(value, spatial, start, loc, attn[..., :1])
    with pytest.raises(RuntimeError, match='must share a dtype'):
        ext.ms_deform_attn_fwd(value, spatial, start, loc.float(), attn)
    with pytest.raises(RuntimeError, match='grad_output must be'):
        ext.ms_deform_attn_bwd(value, value, spatial, start, loc, attn, False)
    # The CPU kernel checks the level table itself (the kernels index memory with it).
    with pytest.raises(RuntimeError, match=r'value has 15 keys but spatial_shapes sum to 16'):
        ext.ms_deform_attn_fwd(value[:, 1:], spatial, start, loc, attn)
    with pytest.raises(RuntimeError, match=r'level_start_index\[0\] = 2'):
        ext.ms_deform_attn_bwd(
            value.new_zeros(2, 5, 16), value, spatial, start + 2, loc, attn, False)


# ----------------------------------------------------------------------------------------------
# CUDA (compiled in CI; run where a GPU is lent)
# ----------------------------------------------------------------------------------------------


def _cuda_kernel():
    if not KERNEL or not msda.load_ext('_ext', msda._FUNCS).with_cuda:
        pytest.skip('mmext._ext built without CUDA')


@pytest.mark.cuda
@pytest.mark.parametrize('case', CASES, ids=lambda c: str(c['shapes']))
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10), (torch.float32, 1e-5),
                                       (torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
@pytest.mark.parametrize('deterministic', [False, True])
def test_cuda_matches_cpu_kernel(case, dtype, tol, deterministic):
    _cuda_kernel()
    # Inputs rounded to dtype, so both sides sample the same locations; the CPU side in float64.
    inputs = [t.to(dtype) if t.is_floating_point() else t for t in make_inputs(**case)]
    grad_out = torch.randn(inputs[0].shape[0], inputs[3].shape[1],
                           inputs[0].shape[2] * inputs[0].shape[3]).to(dtype)
    cpu = run(multi_scale_deformable_attn,
              [t.double() if t.is_floating_point() else t for t in inputs], grad_out.double())
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        ours = run(multi_scale_deformable_attn, [t.cuda() for t in inputs], grad_out.cuda())
    finally:
        torch.use_deterministic_algorithms(previous)
    for name, a, b in zip(('out', 'value', 'loc', 'attn'), ours, cpu):
        assert a.dtype == dtype and a.is_cuda, name
        # half types: rounding of the result, relative to the size of the quantity
        scale = 1 if dtype in (torch.float64, torch.float32) else max(1., b.abs().max().item())
        torch.testing.assert_close(a.cpu().double(), b, atol=tol * scale, rtol=tol, msg=name)


@pytest.mark.cuda
def test_cuda_deterministic_backward_is_bit_identical():
    _cuda_kernel()
    inputs = make_inputs([(20, 30), (10, 15)],
                         queries=256,
                         heads=4,
                         dims=32,
                         points=4,
                         dtype=torch.float32,
                         low=0.,
                         high=1.)
    inputs[3] = (inputs[3] * 4).round() / 4
    inputs = [t.cuda() for t in inputs]
    torch.use_deterministic_algorithms(True)
    try:
        first, second = run(multi_scale_deformable_attn, inputs), run(multi_scale_deformable_attn,
                                                                      inputs)
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
