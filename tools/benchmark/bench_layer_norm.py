"""Time mmext's fused LayerNorm against torch.nn.functional.layer_norm (and apex if present).

For every shape M x N and dtype: forward and forward+backward medians, effective bandwidth
(bytes the op must move: forward reads x and writes y; backward reads dy and x and writes dx),
and the ratio torch / mmext.  On a GPU the script also measures device-to-device copy bandwidth
in the same run and reports the forward as a percentage of it.  Before timing, every candidate's
output is compared with torch's.

    .venv/bin/python tools/benchmark/bench_layer_norm.py                     # the full grid (GPU)
    .venv/bin/python tools/benchmark/bench_layer_norm.py --device cpu --quick # a CPU-sized subset
    .venv/bin/python tools/benchmark/bench_layer_norm.py --m 8192 --n 1024 --dtype bf16
"""
import argparse
import statistics
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from timing import interleaved  # tools/benchmark/timing.py

from mmext.ops import fused_layer_norm
from mmext.utils.ext_loader import ext_available

DTYPES = dict(fp32=torch.float32, fp16=torch.float16, bf16=torch.bfloat16)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--m', type=int, nargs='+', default=[4096, 8192, 32768])
    p.add_argument('--n', type=int, nargs='+', default=[512, 768, 1024, 4096, 8192])
    p.add_argument('--dtype', nargs='+', choices=sorted(DTYPES), default=['fp32', 'fp16', 'bf16'])
    p.add_argument('--quick', action='store_true', help='M=4096, N in {512, 1024, 4096}')
    p.add_argument('--repeats', type=int, default=20)
    p.add_argument('--threads', type=int, default=None)
    return p.parse_args(argv)


def apex_layer_norm() -> Optional[Callable]:
    try:
        from apex.normalization.fused_layer_norm import fused_layer_norm_affine
    except ImportError:
        return None
    return lambda x, n, w, b: fused_layer_norm_affine(x, w, b, (n, ), 1e-5)


def copy_bandwidth(device: str, nbytes: int, repeats: int) -> float:
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    s = interleaved({'copy': lambda: dst.copy_(src)}, repeats, device=device)['copy']
    return 2 * nbytes / statistics.median(x.wall for x in s) / 1e9


def bench_shape(m: int, n: int, dtype: torch.dtype, args, impls: Dict[str, Callable]) -> List[str]:
    dev = args.device
    x = torch.randn(m, n, device=dev).to(dtype)
    w = (torch.rand(n, device=dev) + 0.5).to(dtype)
    b = torch.randn(n, device=dev).to(dtype)
    dy = torch.randn(m, n, device=dev).to(dtype)
    ref = F.layer_norm(x.float(), (n, ), w.float(), b.float())
    for name, fn in impls.items():
        err = (fn(x, n, w, b).float() - ref).abs().max().item()
        if err > {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-1}[dtype]:
            raise SystemExit(f'{name} differs from torch at {m}x{n} {dtype}: max error {err}')
    xg = x.clone().requires_grad_()
    wg, bg = w.clone().requires_grad_(), b.clone().requires_grad_()

    def fwd(fn):
        return lambda: fn(x, n, w, b)

    def fwd_bwd(fn):

        def run():
            xg.grad = wg.grad = bg.grad = None
            fn(xg, n, wg, bg).backward(dy)

        return run

    size = x.element_size() * m * n
    rows = []
    t_f = interleaved({k: fwd(f) for k, f in impls.items()}, args.repeats, device=dev)
    t_fb = interleaved({k: fwd_bwd(f) for k, f in impls.items()}, args.repeats, device=dev)
    med = {
        k: (statistics.median(s.wall for s in t_f[k]), statistics.median(s.wall for s in t_fb[k]))
        for k in impls
    }
    base_f, base_fb = med['torch']
    for k, (f, fb) in med.items():
        row = (f'{m:6d} x {n:5d} {str(dtype)[6:]:8s} {k:6s} fwd {f * 1e3:8.3f} ms '
               f'{2 * size / f / 1e9:7.1f} GB/s ({base_f / f:4.2f}x)   fwd+bwd {fb * 1e3:8.3f} ms '
               f'{5 * size / fb / 1e9:7.1f} GB/s ({base_fb / fb:4.2f}x)')
        if args.copy_gbs:
            row += f'   fwd at {100 * 2 * size / f / 1e9 / args.copy_gbs:5.1f}% of copy'
        rows.append(row)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.m, args.n = [4096], [512, 1024, 4096]
    if not ext_available('_ext', ('layer_norm_fwd', 'layer_norm_bwd')):
        raise SystemExit('mmext._ext is missing or stale: the benchmark would time the fallback')
    impls: Dict[str, Callable] = {
        'torch': lambda x, n, w, b: F.layer_norm(x, (n, ), w, b, 1e-5),
        'mmext': lambda x, n, w, b: fused_layer_norm(x, n, w, b, 1e-5)
    }
    apex = apex_layer_norm() if args.device == 'cuda' else None
    if apex is not None:
        impls['apex'] = apex
    args.copy_gbs = None
    if args.device == 'cuda':
        args.copy_gbs = copy_bandwidth(args.device, 256 << 20, args.repeats)
    print(f'torch {torch.__version__}, device {args.device}' +
          (f' ({torch.cuda.get_device_name()})' if args.device ==
           'cuda' else f', {torch.get_num_threads()} threads') +
          (f', device-to-device copy {args.copy_gbs:.0f} GB/s' if args.copy_gbs else '') +
          f'; medians of {args.repeats}; ratios are torch / candidate')
    for dtype in args.dtype:
        for m in args.m:
            for n in args.n:
                for row in bench_shape(m, n, DTYPES[dtype], args, impls):
                    print(row, flush=True)


if __name__ == '__main__':
    main()
