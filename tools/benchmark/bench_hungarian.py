"""Time mmext.HungarianAssigner (batched) against mmdet's HungarianAssigner looped over images.

For each case ``B x Q x G`` (images x queries x targets per image) both assigners get the same
DETR-style predictions and targets.  mmdet runs ``assign`` once per image (what DETRHead does);
mmext runs ``assign_batch`` once, with its compiled solver (``solver='compiled'``, what
``'auto'`` picks on CPU when mmext's ops are built) and with scipy per image.  mmext's box costs
use the fused kernels whenever the ops are built (``--no-fused-costs`` times the torch
expressions instead).  Runs are interleaved so machine drift hits all alike; the median of
``--repeats`` runs is reported with the minimum (less sensitive to other jobs on the machine).
Before timing, the total matched cost of every image is compared against mmdet's; the script
exits with status 1 if any differs by more than 1e-9 x scale.

    .venv/bin/python tools/benchmark/bench_hungarian.py                        # both issue cases
    .venv/bin/python tools/benchmark/bench_hungarian.py --threads 2 --costs deformable
    .venv/bin/python tools/benchmark/bench_hungarian.py --case 4x900x100 --repeats 10
"""
import argparse
import statistics
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.task_modules.assigners import HungarianAssigner as MMDetHungarianAssigner
from mmengine.structures import InstanceData
from timing import interleaved  # tools/benchmark/timing.py

from mmext.models.task_modules.assigners import HungarianAssigner
from mmext.ops import fused_match_costs
from mmext.utils.ext_loader import ext_available

COSTS = dict(
    detr=[
        dict(type='ClassificationCost', weight=1.),
        dict(type='BBoxL1Cost', box_format='xywh', weight=5.),
        dict(type='IoUCost', iou_mode='giou', weight=2.)
    ],
    deformable=[
        dict(type='FocalLossCost', weight=2.),
        dict(type='BBoxL1Cost', box_format='xywh', weight=5.),
        dict(type='IoUCost', iou_mode='giou', weight=2.)
    ])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--case',
        action='append',
        default=None,
        help='BxQxG, repeatable (default: 8x300x50 and 16x100x20)')
    parser.add_argument('--costs', choices=sorted(COSTS), default='detr')
    parser.add_argument('--num-classes', type=int, default=80)
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument(
        '--skip-torch-solver',
        action='store_true',
        help='no effect: the torch solver was removed (kept for recorded commands)')
    parser.add_argument(
        '--no-fused-costs',
        action='store_true',
        help="time mmext's torch cost expressions instead of the fused kernels")
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def make_batch(B: int, Q: int, G: int, num_classes: int, device: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    preds, gts, metas = [], [], []
    for _ in range(B):
        h, w = 800., 1216.
        scale = torch.tensor([w, h, w, h])

        def boxes(n: int) -> torch.Tensor:
            cxcy = torch.rand(n, 2, generator=g)
            wh = torch.rand(n, 2, generator=g) * 0.5 + 0.01
            return (torch.cat([cxcy - wh / 2, cxcy + wh / 2], -1).clamp(0, 1) * scale)

        preds.append(
            InstanceData(scores=torch.randn(Q, num_classes, generator=g),
                         bboxes=boxes(Q)).to(device))
        gts.append(
            InstanceData(labels=torch.randint(0, num_classes, (G, ), generator=g),
                         bboxes=boxes(G)).to(device))
        metas.append(dict(img_shape=(int(h), int(w))))
    return preds, gts, metas


def total_costs(results, preds, gts, metas, assigner) -> List[float]:
    cost = assigner.batch_cost(preds, gts, metas)['cost'].double().cpu()
    out = []
    for b, r in enumerate(results):
        q = (r.gt_inds > 0).nonzero().flatten().cpu()
        out.append(cost[b, q, r.gt_inds.cpu()[q] - 1].sum().item())
    return out


def timed(fns: Dict[str, Callable[[], object]], repeats: int,
          device: str) -> Dict[str, Tuple[float, float]]:
    """Median and minimum wall seconds of each function, called alternately."""
    samples = interleaved(fns, repeats, device=device)
    return {
        name: (statistics.median(s.wall for s in ss), min(s.wall for s in ss))
        for name, ss in samples.items()
    }


def run_case(case: Tuple[int, int, int], args: argparse.Namespace) -> bool:
    B, Q, G = case
    preds, gts, metas = make_batch(B, Q, G, args.num_classes, args.device, args.seed)
    theirs = MMDetHungarianAssigner(match_costs=COSTS[args.costs])
    ours = HungarianAssigner(COSTS[args.costs], solver='scipy')
    ours_compiled = HungarianAssigner(COSTS[args.costs], solver='compiled')

    def mmdet_loop():
        return [theirs.assign(p, g, m) for p, g, m in zip(preds, gts, metas)]

    fns = {'mmdet (loop)': mmdet_loop}
    if ext_available('_ext', ('batched_linear_sum_assignment', )) and args.device == 'cpu':
        fns['mmext (batch, compiled)'] = lambda: ours_compiled.assign_batch(preds, gts, metas)
    fns['mmext (batch, scipy)'] = lambda: ours.assign_batch(preds, gts, metas)

    ref = total_costs(mmdet_loop(), preds, gts, metas, ours)
    ok = True
    for name, fn in list(fns.items())[1:]:
        got = total_costs(fn(), preds, gts, metas, ours)
        worst = max(abs(a - b) / max(1., abs(a)) for a, b in zip(ref, got))
        same = worst <= 1e-9
        ok &= same
        print(f'  {name}: total cost {"identical" if same else "DIFFERS"} to mmdet '
              f'(max rel diff {worst:.1e}, sum {sum(got):.6f} vs {sum(ref):.6f})')
    t = timed(fns, args.repeats, args.device)
    base_med, base_min = t['mmdet (loop)']
    for name, (med, low) in t.items():
        print(f'  {name:25s} median {med * 1e3:8.3f} ms  min {low * 1e3:8.3f} ms   '
              f'mmdet/this = {base_med / med:5.2f}x (median) {base_min / low:5.2f}x (min)')
    return ok


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [tuple(int(x) for x in c.split('x')) for c in (args.case or ['8x300x50', '16x100x20'])]
    print(f'torch {torch.__version__}, device={args.device}, threads={torch.get_num_threads()}, '
          f'costs={args.costs}, median of {args.repeats}')
    ok = True
    with fused_match_costs(not args.no_fused_costs):
        for case in cases:
            print(f'{case[0]} images x {case[1]} queries x {case[2]} targets:')
            ok &= run_case(case, args)
    if not ok:
        sys.exit(1)


if __name__ == '__main__':
    main()
