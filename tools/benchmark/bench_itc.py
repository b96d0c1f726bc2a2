"""Time one ITC loss step (forward + backward + enqueue): mmext.ITCLoss vs mmpretrain's ITCHead.

Both get the same normalised features of a batch, the same queue contents and the same
temperature, with momentum distillation on (mmpretrain's head cannot run with it off) and
image-id targets.  Before timing, the losses and the gradients w.r.t. the raw features and the
temperature are compared (atol 1e-5); the script exits with status 1 if they differ.  Runs
interleave (tools/benchmark/timing.py) so load drift hits both alike; median and minimum of
wall and process-CPU seconds are printed with the ratio.

    .venv/bin/python tools/benchmark/bench_itc.py [--batch 128] [--dim 256] [--queue 8192]
"""
import argparse
import statistics
import sys
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmpretrain.models.heads import ITCHead as MMPretrainITCHead
from mmpretrain.structures import DataSample
from timing import interleaved  # tools/benchmark/timing.py

from mmext.models.losses import ITCLoss


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--dim', type=int, default=256)
    parser.add_argument('--queue', type=int, default=8192, help='a multiple of --batch')
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--threads', type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, d, k = args.batch, args.dim, args.queue
    theirs = MMPretrainITCHead(embed_dim=d, queue_size=k, alpha=0.4)
    ours = ITCLoss(d, queue_size=k, use_distill=True, alpha=0.4)
    ours.queue.enqueue(
        dict(image=theirs.image_queue.t().clone(), text=theirs.text_queue.t().clone()),
        theirs.idx_queue[0].clone())
    raw = [torch.randn(n, d, requires_grad=True) for _ in range(2)]
    feats_m = [F.normalize(torch.randn(n, d), dim=-1) for _ in range(2)]
    ids = torch.randint(0, n // 2, (n, ))  # about two captions per image
    samples = [DataSample(image_id=int(i)) for i in ids]

    def step(head):
        feats = ([F.normalize(raw[0], dim=-1), F.normalize(raw[1], dim=-1), *feats_m], )
        loss = head.loss(feats, samples)['itc_loss']
        grads = torch.autograd.grad(loss, raw + [head.temp])
        return loss.detach(), grads

    l_theirs, g_theirs = step(theirs)
    l_ours, g_ours = step(ours)
    worst = max([abs(l_ours - l_theirs).item()] + [(a - b).abs().max().item()
                                                   for a, b in zip(g_ours, g_theirs)])
    ok = worst <= 1e-5
    print(f'batch {n}, dim {d}, queue {k}, threads {args.threads}: loss {l_ours.item():.6f} vs '
          f'{l_theirs.item():.6f}; max |diff| over loss and grads {worst:.2e} '
          f'({"agree" if ok else "DIFFER"})')
    samples_t = interleaved(
        {
            'mmpretrain ITCHead': lambda: step(theirs),
            'mmext ITCLoss': lambda: step(ours)
        }, args.repeats)
    stats = {}
    for name, ss in samples_t.items():
        walls = [s.wall for s in ss]
        stats[name] = (statistics.median(walls), min(walls), statistics.median([s.cpu for s in ss]))
    base = stats['mmpretrain ITCHead']
    for name, (med, low, cpu) in stats.items():
        print(f'  {name:20s} wall median {med * 1e3:8.2f} ms  min {low * 1e3:8.2f} ms  '
              f'cpu median {cpu * 1e3:8.2f} ms   mmpretrain/this = {base[0] / med:5.2f}x '
              f'(median) {base[1] / low:5.2f}x (min)')
    if not ok:
        sys.exit(1)


if __name__ == '__main__':
    main()
