"""Swin Transformer forward+backward: mmext.SwinTransformer vs mmpretrain's SwinTransformer.

Both get the same weights (identical key layout) and the same batch; their stage outputs must
agree (eval mode, float32, 1e-4) before anything is timed.  Training steps (forward, backward of
the sum of the outputs, stochastic depth off so both do the same work) then run interleaved
(tools/benchmark/timing.py) and are reported as images/s.  Peak memory of one step is measured
per candidate in a fresh subprocess (tools/benchmark/memory.py).

    python tools/benchmark/bench_swin.py [--arch tiny] [--batch 2] [--size 224] [--threads 1]
"""
import argparse
import os
import statistics
import sys
from typing import Callable, Dict, Optional, Sequence

import torch
from mmpretrain.models.backbones import SwinTransformer as PretrainSwin

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory import measure_in_subprocess, report_step_peak  # noqa: E402  (tools/benchmark)
from timing import interleaved  # noqa: E402  (tools/benchmark/timing.py)

from mmext.models.backbones import SwinTransformer  # noqa: E402

CANDIDATES = ('mmpretrain', 'mmext')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--out-indices', type=int, nargs='+', default=[0, 1, 2, 3])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--memory-child', choices=CANDIDATES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build(name: str, args: argparse.Namespace, same_weights: bool = True) -> torch.nn.Module:
    kw = dict(
        arch=args.arch, out_indices=tuple(args.out_indices), drop_path_rate=0., pad_small_map=True)
    torch.manual_seed(0)
    model = PretrainSwin(**kw) if name == 'mmpretrain' else SwinTransformer(**kw)
    if name == 'mmext' and same_weights:  # the reference's weights
        model.load_state_dict(build('mmpretrain', args).state_dict(), strict=True)
    return model.to(args.device)


def step_fn(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:

    def step() -> None:
        model.zero_grad(set_to_none=True)
        sum(o.float().mean() for o in model(x)).backward()

    return step


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward after one forward (distinct storages): a
    deterministic complement to the peak RSS, which the allocator and the machine make noisy."""
    storages: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if isinstance(t, torch.Tensor) and not isinstance(t, torch.nn.Parameter):
            st = t.untyped_storage()
            storages[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = model(x)
    del outs
    return sum(storages.values())


def images(args: argparse.Namespace) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(args.device)


def memory_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: peak memory of one training step of one candidate."""
    torch.set_num_threads(args.threads)
    model = build(args.memory_child, args, same_weights=False)  # one model in this process
    model.train()
    report_step_peak(step_fn(model, images(args)), args.device)


def measure_memory(name: str, args: argparse.Namespace) -> float:
    argv = [
        '--arch', args.arch, '--batch',
        str(args.batch), '--size',
        str(args.size), '--threads',
        str(args.threads), '--device', args.device, '--out-indices', *map(str, args.out_indices)
    ]
    return measure_in_subprocess(__file__, argv, name)[0]


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return
    torch.set_num_threads(args.threads)
    models = {name: build(name, args) for name in CANDIDATES}
    x = images(args)
    for m in models.values():
        m.eval()  # mmpretrain's train() returns None: no chaining
    with torch.no_grad():
        outs = {name: m(x) for name, m in models.items()}
    diff = max(float((a - b).abs().max()) for a, b in zip(outs['mmext'], outs['mmpretrain']))
    if diff > 1e-4:
        raise SystemExit(f'outputs differ (max |mmext - mmpretrain| = {diff:.2e}); not timing')
    steps: Dict[str, Callable[[], None]] = {}
    for name, model in models.items():
        model.train()
        steps[name] = step_fn(model, x)
    samples = interleaved(steps, args.repeats, warmup=1, device=args.device)
    memory = {name: measure_memory(name, args) for name in CANDIDATES}
    saved = {name: saved_activation_bytes(m, x) / 2**20 for name, m in models.items()}

    wall = {n: statistics.median(s.wall for s in ss) for n, ss in samples.items()}
    cpu = {n: statistics.median(s.cpu for s in ss) for n, ss in samples.items()}
    print(f'torch {torch.__version__}, {args.device}, {torch.get_num_threads()} thread(s); '
          f'Swin-{args.arch} batch {args.batch} x {args.size}x{args.size}, out_indices '
          f'{tuple(args.out_indices)}, forward+backward; max |out mmext - mmpretrain| {diff:.1e}')
    for name in CANDIDATES:
        print(f'{name:10s} {args.batch / wall[name]:7.2f} img/s (median {wall[name] * 1e3:8.1f} ms '
              f'wall, {cpu[name] * 1e3:8.1f} ms cpu)  peak memory +{memory[name]:7.1f} MiB, '
              f'saved for backward {saved[name]:7.1f} MiB')
    print(f'mmext / mmpretrain: throughput {wall["mmpretrain"] / wall["mmext"]:.2f}x (wall), '
          f'{cpu["mmpretrain"] / cpu["mmext"]:.2f}x (cpu); peak memory '
          f'{memory["mmext"] / memory["mmpretrain"]:.2f}x, saved for backward '
          f'{saved["mmext"] / saved["mmpretrain"]:.2f}x')


if __name__ == '__main__':
    main()
