"""Time mmext.VisionTransformer against mmpretrain's VisionTransformer: forward + backward.

Both backbones get the same architecture, the same weights (mmpretrain's state dict loads into
ours unchanged) and the same batch.  First the outputs and input gradients are compared (exit
status 1 if they differ by more than ``--atol``); then one training-style step (forward,
``sum(out * w).backward()``) of each is timed, interleaved so machine drift hits both alike
(median of ``--repeats``), and reported as images/s.  Peak memory of one step:

* on CUDA, ``torch.cuda.max_memory_allocated`` around the step;
* on CPU, in a fresh subprocess per candidate, the peak resident set of one step after a
  warm-up step (tools/benchmark/memory.py explains the method).

    .venv/bin/python tools/benchmark/bench_vit.py                            # ViT-S/16, 8 x 224^2
    .venv/bin/python tools/benchmark/bench_vit.py --arch base --batch 4 --threads 2
    .venv/bin/python tools/benchmark/bench_vit.py --arch base --batch 64 --device cuda
"""
import argparse
import copy
import logging
import os
import statistics
import sys
from typing import Dict, Optional, Sequence, Tuple

import torch
from memory import measure_in_subprocess, report_step_peak  # tools/benchmark/memory.py
from mmengine.logging import MMLogger
from mmpretrain.models.backbones import VisionTransformer as RefViT
from timing import interleaved  # tools/benchmark/timing.py

from mmext.models.backbones.vision_transformer import VisionTransformer

NAMES = ('mmpretrain', 'mmext')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--arch',
        default='small',
        choices=('tiny', 'small', 'base', 'large'),
        help="mmext arch (mmpretrain gets the same settings as a dict; note "
        "its own 'small' differs)")
    parser.add_argument('--img', type=int, default=224, help='input size (square)')
    parser.add_argument('--patch', type=int, default=16)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument(
        '--out-type', default='cls_token', choices=('cls_token', 'featmap', 'avg_featmap', 'raw'))
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--atol', type=float, default=1e-4)
    parser.add_argument('--no-memory', action='store_true', help='skip the memory measurement')
    parser.add_argument('--no-timing', action='store_true', help='skip the throughput timing')
    parser.add_argument('--memory-child', choices=NAMES, help=argparse.SUPPRESS)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def build(args: argparse.Namespace, device: torch.device) -> Dict[str, torch.nn.Module]:
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    arch = dict(VisionTransformer.arch_zoo[args.arch])
    cfg = dict(img_size=224, patch_size=args.patch, out_type=args.out_type)
    torch.manual_seed(args.seed)
    ref = RefViT(arch=copy.deepcopy(arch), **cfg)
    ref.init_weights()
    ours = VisionTransformer(arch=arch, **cfg)
    ours.load_state_dict(ref.state_dict())
    models = dict(mmpretrain=ref.to(device), mmext=ours.to(device))
    for model in models.values():
        model.train()  # (mmpretrain's train() returns None: no chaining)
    return models


def make_batch(args: argparse.Namespace, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(args.seed)
    return torch.randn(args.batch, 3, args.img, args.img, generator=gen).to(device)


def step(model: torch.nn.Module,
         x: torch.Tensor,
         set_to_none: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """One forward + backward; returns the output and the input gradient."""
    model.zero_grad(set_to_none=set_to_none)
    x = x.detach().requires_grad_()
    out = model(x)[-1]
    weight = torch.linspace(-1, 1, out.numel(), device=out.device).reshape(out.shape)
    (out * weight).sum().backward()
    return out.detach(), x.grad


def memory_child(args: argparse.Namespace) -> None:
    """Runs in a subprocess: peak-memory growth of one step of one candidate, as JSON."""
    device = torch.device(args.device)
    model = build(args, device)[args.memory_child]
    x = make_batch(args, device)
    report_step_peak(lambda: step(model, x, set_to_none=False), args.device)


def measure_memory(args: argparse.Namespace, argv) -> Tuple[Dict[str, float], str]:
    """Peak MiB of one step per candidate, each in its own process (CPU RSS is per process)."""
    out, method = {}, ''
    for name in NAMES:
        out[name], method = measure_in_subprocess(__file__, argv, name)
    return out, method


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return
    device = torch.device(args.device)
    models = build(args, device)
    x = make_batch(args, device)

    # 1. the values agree
    (ref_out, ref_grad), (our_out, our_grad) = (step(models[n], x) for n in NAMES)
    out_diff = float((ref_out - our_out).abs().max())
    grad_diff = float((ref_grad - our_grad).abs().max())
    ok = out_diff <= args.atol and grad_diff <= args.atol
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; '
          f'ViT-{args.arch}/{args.patch}, batch {args.batch} x 3 x {args.img}^2, '
          f'out_type {args.out_type}')
    print(f'max |output diff| {out_diff:.2e}, max |input-grad diff| {grad_diff:.2e}: '
          f'{"OK" if ok else "MISMATCH"}')
    if not ok:
        sys.exit(1)

    # 2. throughput
    if not args.no_timing:
        time_steps(args, models, x, device)

    # 3. memory
    if not args.no_memory:
        mem, how = measure_memory(args, argv)
        print(f'\npeak memory of one step ({how}, one process per candidate)')
        for n in NAMES:
            print(f'{n:<12}{mem[n]:>10.1f} MiB')
        if mem['mmpretrain'] > 0:
            print(f'memory ratio mmext / mmpretrain: {mem["mmext"] / mem["mmpretrain"]:.3f}')


def time_steps(args: argparse.Namespace, models: Dict[str, torch.nn.Module], x: torch.Tensor,
               device: torch.device) -> None:
    load = ' '.join(f'{v:.2f}' for v in os.getloadavg())
    samples = interleaved({n: (lambda m=models[n]: step(m, x))
                           for n in NAMES},
                          args.repeats,
                          device=device)
    wall = {n: statistics.median(s.wall for s in samples[n]) for n in NAMES}
    cpu = {n: statistics.median(s.cpu for s in samples[n]) for n in NAMES}
    print(f'\nforward+backward, median of {args.repeats} (load average before: {load})')
    print(f'{"":<12}{"ms/step":>10}{"images/s":>10}{"CPU ms":>10}')
    for n in NAMES:
        print(f'{n:<12}{wall[n] * 1e3:>10.1f}{args.batch / wall[n]:>10.1f}{cpu[n] * 1e3:>10.1f}')
    print(f'throughput ratio mmext / mmpretrain: {wall["mmpretrain"] / wall["mmext"]:.3f}x '
          f'(wall), {cpu["mmpretrain"] / cpu["mmext"]:.3f}x (CPU time); > 1: mmext is faster')


if __name__ == '__main__':
    main()
