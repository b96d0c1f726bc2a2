"""Time mmext's multi-scale deformable attention kernels against mmcv's implementations.

At DINO's decoder shapes by default (batch 2, the four levels of an 800x1333 image at strides
8-64, 900 queries, 8 heads of 32 channels, 4 points).  On CPU the baseline is mmcv's CPU path
``multi_scale_deformable_attn_pytorch`` (grid_sample per level); on CUDA it is mmcv's kernel
``MultiScaleDeformableAttnFunction``, and mmext is timed with and without
``torch.use_deterministic_algorithms`` (its atomic-free grad_value kernel).  Forward (under
``no_grad``) and forward+backward medians of wall and process-CPU time, candidates interleaved
(tools/benchmark/timing.py); ratios are baseline / mmext.  Peak memory of one forward+backward
step is measured in a fresh process per candidate (tools/benchmark/memory.py).  Before timing,
outputs and gradients are compared with mmcv's, and mmext's backward is run twice and must be
bit-identical.  ``--baseline-kernel`` adds mmext's CPU kernels built for the baseline x86-64
ISA (``MMEXT_MSDA_CPU_KERNEL=baseline``; by default the AVX2 build runs where the CPU has AVX2)
as the candidate ``mmext-baseline``, which must give the same bits as ``mmext``.

    .venv/bin/python tools/benchmark/bench_ms_deform_attn.py --threads 1
    .venv/bin/python tools/benchmark/bench_ms_deform_attn.py --device cuda
    .venv/bin/python tools/benchmark/bench_ms_deform_attn.py --tiny --repeats 2   # a smoke run
"""
import argparse
import contextlib
import math
import os
import statistics
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from memory import measure_in_subprocess, report_step_peak  # tools/benchmark/memory.py
from timing import interleaved  # tools/benchmark/timing.py

from mmext.ops import multi_scale_deformable_attn
from mmext.utils.ext_loader import ext_available

CANDIDATES = ('mmcv', 'mmext', 'mmext-deterministic', 'mmext-baseline')
DTYPES = dict(fp32=torch.float32, fp16=torch.float16, bf16=torch.bfloat16, fp64=torch.float64)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', choices=sorted(DTYPES), default='fp32')
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--image', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'))
    p.add_argument('--strides', type=int, nargs='+', default=[8, 16, 32, 64])
    p.add_argument('--queries', type=int, default=900)
    p.add_argument('--heads', type=int, default=8)
    p.add_argument('--dims', type=int, default=32, help='channels per head')
    p.add_argument('--points', type=int, default=4)
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--tiny', action='store_true', help='a 64x96 image, 30 queries (smoke test)')
    p.add_argument('--skip-memory', action='store_true')
    p.add_argument(
        '--baseline-kernel',
        action='store_true',
        help='also time the CPU kernels built for the baseline ISA (mmext-baseline)')
    p.add_argument('--memory-child', choices=CANDIDATES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tiny:
        args.image, args.queries = [64, 96], 30
    return args


def level_shapes(args: argparse.Namespace) -> List[Tuple[int, int]]:
    """Feature map sizes of the image at each stride (stride-2 convolutions round up)."""
    return [(math.ceil(args.image[0] / s), math.ceil(args.image[1] / s)) for s in args.strides]


def make_inputs(args: argparse.Namespace) -> Tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    dev, dtype = args.device, DTYPES[args.dtype]
    shapes = torch.tensor(level_shapes(args), dtype=torch.long)
    sizes = shapes.prod(1)
    start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    levels = len(args.strides)
    value = torch.randn(args.batch, int(sizes.sum()), args.heads, args.dims, generator=g)
    # Reference points in the image plus offsets of a few pixels, as a trained model's.
    ref = torch.rand(args.batch, args.queries, 1, 1, 1, 2, generator=g)
    offsets = torch.randn(
        args.batch, args.queries, args.heads, levels, args.points, 2,
        generator=g) * 2 / shapes.flip(1)[None, None, None, :, None].float()
    loc = ref + offsets
    attn = torch.rand(args.batch, args.queries, args.heads, levels * args.points, generator=g)
    attn = attn.softmax(-1).view(args.batch, args.queries, args.heads, levels, args.points)
    grad = torch.randn(args.batch, args.queries, args.heads * args.dims, generator=g)
    return (value.to(dev, dtype), shapes.to(dev), start.to(dev), loc.to(dev, dtype),
            attn.to(dev, dtype), grad.to(dev, dtype))


def candidate(name: str, device: str) -> Callable:
    """fn(value, shapes, start, loc, attn) -> [bs, queries, heads * dims] of 'mmcv' or
    'mmext'."""
    if name == 'mmcv':
        from mmcv.ops import multi_scale_deform_attn as mmcv_msda
        if torch.device(device).type == 'cuda':
            return lambda v, s, i, lo, a: mmcv_msda.MultiScaleDeformableAttnFunction.apply(
                v, s, i, lo, a, 64)
        return lambda v, s, i, lo, a: mmcv_msda.multi_scale_deformable_attn_pytorch(v, s, lo, a)
    return multi_scale_deformable_attn


@contextlib.contextmanager
def environ(env: Dict[str, str]):
    """os.environ with ``env`` set (the C++ side reads it with getenv, per call)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Step:
    """Forward (no_grad) and forward+backward of one candidate on fixed inputs, with ``env`` set
    in the environment during both."""

    def __init__(self,
                 fn: Callable,
                 inputs: Tuple[torch.Tensor, ...],
                 deterministic: bool = False,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.fn, self.deterministic, self.env = fn, deterministic, env or {}
        value, self.shapes, self.start, loc, attn, self.grad = inputs
        self.leaves = [t.clone().requires_grad_() for t in (value, loc, attn)]

    def _call(self, *args) -> torch.Tensor:
        v, lo, a = args
        return self.fn(v, self.shapes, self.start, lo, a)

    def forward(self) -> torch.Tensor:
        with torch.no_grad(), environ(self.env):
            return self._call(*self.leaves)

    def forward_backward(self) -> List[torch.Tensor]:
        for t in self.leaves:
            t.grad = None
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(self.deterministic or previous)
        try:
            with environ(self.env):
                out = self._call(*self.leaves)
                out.backward(self.grad)
        finally:
            torch.use_deterministic_algorithms(previous)
        return [out.detach()] + [t.grad for t in self.leaves]


def build_steps(args: argparse.Namespace) -> Dict[str, Step]:
    inputs = make_inputs(args)
    cuda = args.device.startswith('cuda')
    names = ['mmcv', 'mmext'] + (['mmext-deterministic'] if cuda else [])
    names += ['mmext-baseline'] if args.baseline_kernel and not cuda else []
    # The memory child builds only the candidate it measures.
    names += [args.memory_child] if args.memory_child and args.memory_child not in names else []
    return {
        n:
        Step(
            candidate('mmext' if n.startswith('mmext') else n, args.device),
            inputs,
            deterministic=n == 'mmext-deterministic',
            env={'MMEXT_MSDA_CPU_KERNEL': 'baseline'} if n == 'mmext-baseline' else None)
        for n in names
    }


def check(steps: Dict[str, Step], dtype: torch.dtype) -> None:
    ref = steps['mmcv'].forward_backward()
    tol = {torch.float64: 1e-9, torch.float32: 1e-4}.get(dtype, 3e-2)
    for name, step in steps.items():
        if name == 'mmcv':
            continue
        got = step.forward_backward()
        for what, a, b in zip(('output', 'grad value', 'grad loc', 'grad attn'), got, ref):
            err = ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1)).item()
            if err > tol:
                raise SystemExit(f'{name} differs from mmcv in {what}: scaled error {err:.2e}')
        again = step.forward_backward()
        same = all(torch.equal(a, b) for a, b in zip(got, again))
        print(f'{name}: matches mmcv; two backward runs bit-identical: {same}')
        if name == 'mmext-baseline':
            first = steps['mmext'].forward_backward()
            same = all(torch.equal(a, b) for a, b in zip(got, first))
            print(f'{name}: bit-identical to mmext (the AVX2 build where the CPU has it): {same}')


def memory_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: peak memory of one forward+backward of one candidate."""
    if args.threads:
        torch.set_num_threads(args.threads)
    step = build_steps(args)[args.memory_child]
    report_step_peak(step.forward_backward, args.device)


def child_argv(args: argparse.Namespace) -> List[str]:
    argv = [
        '--device', args.device, '--dtype', args.dtype, '--batch',
        str(args.batch), '--queries',
        str(args.queries), '--heads',
        str(args.heads), '--dims',
        str(args.dims), '--points',
        str(args.points), '--image', *map(str, args.image), '--strides', *map(str, args.strides)
    ]
    return argv + (['--threads', str(args.threads)] if args.threads else [])


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if not ext_available('_ext', ('ms_deform_attn_fwd', 'ms_deform_attn_bwd')):
        raise SystemExit('mmext._ext is missing or stale: the benchmark would time the fallback')
    steps = build_steps(args)
    shapes = level_shapes(args)
    keys = sum(h * w for h, w in shapes)
    device = (
        torch.cuda.get_device_name(args.device)
        if args.device.startswith('cuda') else f'cpu, {torch.get_num_threads()} threads')
    print(f'torch {torch.__version__}, {device}, {args.dtype}; batch {args.batch}, levels '
          f'{shapes} ({keys} keys), {args.queries} queries, {args.heads} heads x {args.dims}, '
          f'{args.points} points; medians of {args.repeats}; ratios are mmcv / candidate')
    check(steps, DTYPES[args.dtype])
    fwd = interleaved({n: s.forward for n, s in steps.items()}, args.repeats, device=args.device)
    fb = interleaved({
        n: s.forward_backward
        for n, s in steps.items()
    },
                     args.repeats,
                     device=args.device)
    med = {
        n: [
            statistics.median(getattr(x, k) for x in t[n]) for t in (fwd, fb)
            for k in ('wall', 'cpu')
        ]
        for n in steps
    }
    memory = {}
    if not args.skip_memory:
        memory = {n: measure_in_subprocess(__file__, child_argv(args), n) for n in steps}
    base = med['mmcv']
    for name, (fw, fc, bw, bc) in med.items():
        row = (f'{name:20s} fwd {fw * 1e3:9.2f} ms wall {fc * 1e3:9.2f} ms cpu '
               f'({base[0] / fw:5.2f}x)   fwd+bwd {bw * 1e3:9.2f} ms wall {bc * 1e3:9.2f} ms cpu '
               f'({base[2] / bw:5.2f}x)')
        if name in memory:
            mib, method = memory[name]
            row += f'   peak {mib:8.1f} MiB ({method})'
        print(row, flush=True)


if __name__ == '__main__':
    main()
