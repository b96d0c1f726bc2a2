"""Time DETRHead.loss_by_feat (matching + losses of every decoder layer): mmext vs mmdet.

mmext's head matches a whole batch per decoder layer with ``HungarianAssigner.assign_batch``;
mmdet's matches one image at a time.  The same head is also timed with its assigner restricted to
per-image ``assign``, to separate the effect of batching from everything else.  All three must
give the same losses before anything is timed; runs interleave so load drift hits all alike.

    python tools/benchmark/bench_detr_head_loss.py [--batch 8] [--queries 100] [--layers 6]
"""
import argparse
import copy
import statistics
from typing import Callable, Dict, List, Optional, Sequence

import torch
from mmdet.models.dense_heads import DETRHead as MMDetDETRHead
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from timing import interleaved  # tools/benchmark/timing.py

import mmext  # noqa: F401
from mmext.models.dense_heads import DETRHead

LOSSES = dict(
    loss_cls=dict(
        type='CrossEntropyLoss',
        bg_cls_weight=0.1,
        use_sigmoid=False,
        loss_weight=1.0,
        class_weight=1.0),
    loss_bbox=dict(type='L1Loss', loss_weight=5.0),
    loss_iou=dict(type='GIoULoss', loss_weight=2.0))
DETR_COSTS = [
    dict(type='ClassificationCost', weight=1.),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0)
]


class PerImageAssigner:
    """Hides ``assign_batch`` so the head matches image by image (``as_batch_assigner``)."""

    def __init__(self, assigner) -> None:
        self.assign = assigner.assign


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--queries', type=int, default=100)
    parser.add_argument('--layers', type=int, default=6, help='decoder layers')
    parser.add_argument('--boxes', type=int, default=20, help='mean gt boxes per image')
    parser.add_argument('--classes', type=int, default=80)
    parser.add_argument('--repeats', type=int, default=30)
    parser.add_argument('--threads', type=int, default=1)
    return parser.parse_args(argv)


def make_inputs(args: argparse.Namespace):
    gen = torch.Generator().manual_seed(0)
    gts: List[InstanceData] = []
    metas: List[dict] = []
    for b in range(args.batch):
        h, w = 800, 1216 - 32 * b
        n = max(args.boxes - args.batch // 2 + b, 0)  # varied counts around the mean
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.7
        wh = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.3 + 8
        gts.append(
            InstanceData(
                bboxes=torch.cat([xy, xy + wh], 1),
                labels=torch.randint(0, args.classes, (n, ), generator=gen)))
        metas.append(dict(img_shape=(h, w)))
    shape = (args.layers, args.batch, args.queries)
    cls = torch.randn(*shape, args.classes + 1, generator=gen)
    box = torch.rand(*shape, 4, generator=gen) * 0.5 + 0.25  # normalised cx, cy, w, h
    return cls, box, gts, metas


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    ours = DETRHead(num_classes=args.classes, embed_dims=256, **copy.deepcopy(LOSSES))
    per_image = copy.deepcopy(ours)
    per_image.assigner = PerImageAssigner(per_image.assigner)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ref = MMDetDETRHead(
            num_classes=args.classes,
            embed_dims=256,
            **copy.deepcopy(LOSSES),
            train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=DETR_COSTS)))
    cls, box, gts, metas = make_inputs(args)
    heads: Dict[str, Callable[[], dict]] = {
        'mmdet': lambda: ref.loss_by_feat(cls, box, gts, metas),
        'mmext per-image': lambda: per_image.loss_by_feat(cls, box, gts, metas),
        'mmext batched': lambda: ours.loss_by_feat(cls, box, gts, metas),
    }
    with torch.no_grad():
        results = {name: fn() for name, fn in heads.items()}
        diff = max(
            float((results['mmext batched'][k] - results['mmdet'][k]).abs())
            for k in results['mmdet'])
        if diff > 1e-5 or any(not torch.equal(results['mmext batched'][k], v)
                              for k, v in results['mmext per-image'].items()):
            raise SystemExit(f'losses differ (max |mmext - mmdet| = {diff:.2e}); not timing')
        samples = interleaved(heads, args.repeats, warmup=0)  # the check above warmed up
    times = {name: [x.wall for x in ss] for name, ss in samples.items()}
    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.batch} images x '
          f'{args.queries} queries x {args.layers} decoder layers, ~{args.boxes} boxes/img; '
          f'max |loss mmext - mmdet| {diff:.1e}')
    for name, ms in med.items():
        print(f'{name:16s} median {ms:7.2f} ms  min {min(times[name]) * 1e3:7.2f} ms  '
              f'mmdet/this {med["mmdet"] / ms:.2f}x')


if __name__ == '__main__':
    main()
