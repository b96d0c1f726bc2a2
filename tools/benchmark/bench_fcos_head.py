"""Time mmext.FCOSHead against mmdet's FCOSHead on one identical batch.

Three measurements, each for both heads with the same weights and inputs, interleaved so that
machine drift hits both alike (median of ``--repeats`` runs):

* ``head``    forward + targets + loss + backward (what a training step spends in the head);
* ``loss``    ``loss_by_feat`` + backward from fixed head outputs (targets and loss assembly,
              everything but the convs);
* ``targets`` ``get_targets`` alone;
* ``convs``   forward + backward of the head's outputs without targets or loss: the work any
              FCOS head must do.  mmdet's head step divided by it is the largest speed-up a head
              with these convolutions can reach on this machine (printed as the ceiling, with the
              convolutions' GFLOP and the throughput they ran at).

The losses of the two heads are compared first; the script exits with status 1 if they differ.

    .venv/bin/python tools/benchmark/bench_fcos_head.py                      # 8 x 512^2, 20 boxes
    .venv/bin/python tools/benchmark/bench_fcos_head.py --threads 2 --repeats 3 --config tricks
    .venv/bin/python tools/benchmark/bench_fcos_head.py --profile           # where the time goes
"""
import argparse
import copy
import logging
import os
import statistics
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.dense_heads import FCOSHead as MMDetFCOSHead
from mmdet.utils import register_all_modules
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData
from timing import interleaved  # tools/benchmark/timing.py

from mmext.models.dense_heads import FCOSHead

STRIDES = (8, 16, 32, 64, 128)
TRICKS = dict(
    center_sampling=True,
    center_sample_radius=1.5,
    norm_on_bbox=True,
    centerness_on_reg=True,
    conv_bias=True,
    loss_bbox=dict(type='GIoULoss', loss_weight=1.0))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=8, help='images per batch')
    parser.add_argument('--boxes', type=int, default=20, help='gt boxes per image')
    parser.add_argument('--img', type=int, default=512, help='square input size in pixels')
    parser.add_argument('--channels', type=int, default=256, help='in and feat channels')
    parser.add_argument('--num-classes', type=int, default=80)
    parser.add_argument('--config', choices=('plain', 'tricks'), default='plain')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs of the full head')
    parser.add_argument(
        '--fast-repeats', type=int, default=30, help='timed runs of loss-only and targets-only')
    parser.add_argument('--skip-head', action='store_true', help='skip the (slow) full head')
    parser.add_argument(
        '--profile',
        action='store_true',
        help='print the top operators of one loss_by_feat + backward per head')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def make_batch(args: argparse.Namespace,
               device: torch.device) -> Tuple[List[torch.Tensor], List[InstanceData], List[dict]]:
    gen = torch.Generator().manual_seed(args.seed)
    feats = [
        torch.randn(args.batch, args.channels, -(-args.img // s), -(-args.img // s),
                    generator=gen).to(device) for s in STRIDES
    ]
    gts = []
    for _ in range(args.batch):
        # log-uniform sizes so that boxes land on every regress range
        wh = torch.exp(torch.empty(args.boxes, 2).uniform_(2.0, 6.2, generator=gen))
        center = torch.rand(args.boxes, 2, generator=gen) * args.img
        boxes = torch.cat([center - wh / 2, center + wh / 2], 1).clamp(0, args.img)
        labels = torch.randint(0, args.num_classes, (args.boxes, ), generator=gen)
        gts.append(InstanceData(bboxes=boxes.to(device), labels=labels.to(device)))
    metas = [
        dict(
            img_shape=(args.img, args.img), pad_shape=(args.img, args.img), scale_factor=(1.0, 1.0))
    ] * args.batch
    return feats, gts, metas


def build_heads(args: argparse.Namespace, device: torch.device) -> Tuple[MMDetFCOSHead, FCOSHead]:
    cfg = dict(
        num_classes=args.num_classes,
        in_channels=args.channels,
        feat_channels=args.channels,
        strides=STRIDES)
    if args.config == 'tricks':
        cfg.update(TRICKS)
    torch.manual_seed(args.seed)
    ref = MMDetFCOSHead(**copy.deepcopy(cfg))
    MMLogger.get_current_instance().setLevel(logging.WARNING)  # init_weights logs every tensor
    ref.init_weights()
    ours = FCOSHead(**copy.deepcopy(cfg))
    ours.load_state_dict(ref.state_dict())
    return ref.to(device).train(), ours.to(device).train()


def conv_flops(head: torch.nn.Module, feats: List[torch.Tensor]) -> float:
    """Multiply-adds x 2 of one forward of every Conv2d of the head over all levels."""
    per_position = sum(2 * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] //
                       m.groups for m in head.modules() if isinstance(m, torch.nn.Conv2d))
    return float(per_position * sum(f.shape[0] * f.shape[2] * f.shape[3] for f in feats))


def time_pair(fns: Dict[str, Callable[[], object]], repeats: int,
              device: torch.device) -> Dict[str, Tuple[float, float]]:
    """Median wall and process-CPU seconds of each function, called alternately."""
    samples = interleaved(fns, repeats, device=device)
    return {
        name: (statistics.median(s.wall for s in ss), statistics.median(s.cpu for s in ss))
        for name, ss in samples.items()
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    register_all_modules(init_default_scope=False)
    device = torch.device(args.device)
    ref, ours = build_heads(args, device)
    feats, gts, metas = make_batch(args, device)
    heads = dict(mmdet=ref, mmext=ours)

    def head_step(head) -> Dict[str, torch.Tensor]:
        head.zero_grad(set_to_none=True)
        losses = head.loss_by_feat(*head(feats), gts, metas)
        sum(losses.values()).backward()
        return losses

    # fixed head outputs (leaves) for the loss-only measurement
    with torch.no_grad():
        outs = ours(feats)
    outs = [[t.detach().clone().requires_grad_() for t in lvls] for lvls in outs]

    def loss_step(head) -> Dict[str, torch.Tensor]:
        for t in (t for lvls in outs for t in lvls):
            t.grad = None
        losses = head.loss_by_feat(*outs, gts, metas)
        sum(losses.values()).backward()
        return losses

    def conv_step(head) -> None:
        head.zero_grad(set_to_none=True)
        sum(t.sum() for lvls in head(feats) for t in lvls).backward()

    points = ours.prior_generator.grid_priors([f.shape[-2:] for f in feats], device=device)

    # 1. the values agree
    ref_losses = {k: v.detach() for k, v in loss_step(ref).items()}
    ref_grads = [t.grad.clone() for lvls in outs for t in lvls]
    our_losses = {k: v.detach() for k, v in loss_step(ours).items()}
    our_grads = [t.grad for lvls in outs for t in lvls]
    max_loss_diff = max(abs(float(ref_losses[k]) - float(our_losses[k])) for k in ref_losses)
    max_grad_diff = max(float((a - b).abs().max()) for a, b in zip(ref_grads, our_grads))
    ok = max_loss_diff <= 1e-5 and max_grad_diff <= 1e-5
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; '
          f'batch {args.batch} x {args.img}^2, {args.boxes} boxes/img, {args.channels} channels, '
          f'{args.num_classes} classes, config {args.config}')
    print('losses  ' + ', '.join(f'{k} mmdet {float(ref_losses[k]):.6f} mmext '
                                 f'{float(our_losses[k]):.6f}' for k in ref_losses))
    print(f'max |loss diff| {max_loss_diff:.2e}, max |grad diff| w.r.t. head outputs '
          f'{max_grad_diff:.2e}: {"OK" if ok else "MISMATCH"}')
    if not ok:
        sys.exit(1)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        for name, head in heads.items():
            loss_step(head)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                loss_step(head)
            print(f'\n== {name}: loss_by_feat + backward ==')
            print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=15))

    # 2. timings
    rows = []
    if not args.skip_head:
        rows.append(('head (fwd+targets+loss+bwd)',
                     time_pair({
                         n: (lambda h=h: head_step(h))
                         for n, h in heads.items()
                     }, args.repeats, device)))
        rows.append(('convs (fwd + bwd, no loss)',
                     time_pair({
                         n: (lambda h=h: conv_step(h))
                         for n, h in heads.items()
                     }, args.repeats, device)))
    rows.append(('loss_by_feat + bwd',
                 time_pair({
                     n: (lambda h=h: loss_step(h))
                     for n, h in heads.items()
                 }, args.fast_repeats, device)))
    with torch.no_grad():
        rows.append(
            ('get_targets',
             time_pair({
                 n: (lambda h=h: h.get_targets(points, gts))
                 for n, h in heads.items()
             }, args.fast_repeats, device)))
    print(f'\nmedian ms (wall | process CPU), load average before: '
          f'{" ".join(f"{x:.2f}" for x in os.getloadavg())}')
    columns = f'{"mmdet":>10}{"mmext":>10}{"ratio":>8}'
    print(f'{"":<30}{columns}  |{columns}')
    for label, times in rows:
        (ref_w, ref_c), (our_w, our_c) = times['mmdet'], times['mmext']
        print(f'{label:<30}{ref_w * 1e3:>10.1f}{our_w * 1e3:>10.1f}{ref_w / our_w:>7.2f}x'
              f'  |{ref_c * 1e3:>10.1f}{our_c * 1e3:>10.1f}{ref_c / our_c:>7.2f}x')
    print('ratio = mmdet / mmext (> 1: mmext is faster)')
    if not args.skip_head:
        times = dict(rows)
        conv_wall = min(w for w, _ in times['convs (fwd + bwd, no loss)'].values())
        gflop = 3 * conv_flops(ours, feats) / 1e9  # forward, input grad and weight grad
        ceiling = times['head (fwd+targets+loss+bwd)']['mmdet'][0] / conv_wall
        print(f'convolutions: {gflop:.0f} GFLOP per step (fwd + bwd), run at '
              f'{gflop / conv_wall:.0f} GFLOP/s; ceiling for any head with these convolutions: '
              f'mmdet head step / convs = {ceiling:.2f}x')


if __name__ == '__main__':
    main()
