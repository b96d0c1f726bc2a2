"""Time a DINO head-loss step (losses of every decoder layer, encoder proposals and denoising
queries, then backward): mmext's DINOHead vs mmdet's.

mmext's head matches a whole batch per decoder layer with ``HungarianAssigner.assign_batch``;
mmdet's matches one image at a time.  Both heads share weights and inputs and must give the same
losses before anything is timed; runs interleave so load drift hits both alike.  Defaults are
DINO-4scale's COCO shapes: 900 queries, 6 decoder layers, 256 channels, 80 classes, 100
denoising queries per group side.

    python tools/benchmark/bench_dino_head_loss.py [--batch 2] [--queries 900] [--boxes 20]
"""
import argparse
import statistics
from typing import Callable, Dict, List, Optional, Sequence

import torch
from mmdet.models.dense_heads import DINOHead as MMDetDINOHead
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from timing import interleaved  # tools/benchmark/timing.py

import mmext  # noqa: F401
from mmext.models.dense_heads import DINOHead


def head_cfg(assigner: str, args: argparse.Namespace) -> dict:
    return dict(
        num_classes=args.classes,
        embed_dims=args.dims,
        num_pred_layer=args.layers + 1,
        as_two_stage=True,
        sync_cls_avg_factor=True,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0),
        train_cfg=dict(
            assigner=dict(
                type=assigner,
                match_costs=[
                    dict(type='FocalLossCost', weight=2.0),
                    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                    dict(type='IoUCost', iou_mode='giou', weight=2.0)
                ])),
        test_cfg=dict(max_per_img=100))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--queries', type=int, default=900)
    parser.add_argument('--layers', type=int, default=6, help='decoder layers')
    parser.add_argument('--dims', type=int, default=256)
    parser.add_argument('--boxes', type=int, default=20, help='mean gt boxes per image')
    parser.add_argument('--classes', type=int, default=80)
    parser.add_argument('--dn-queries', type=int, default=100, help="dn_cfg's num_dn_queries")
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--threads', type=int, default=1)
    return parser.parse_args(argv)


def make_samples(args: argparse.Namespace) -> List[DetDataSample]:
    gen = torch.Generator().manual_seed(0)
    samples = []
    for b in range(args.batch):
        h, w = 800, 1216 - 32 * b
        n = max(args.boxes - args.batch // 2 + b, 1)  # varied counts around the mean
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.7
        wh = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.3 + 8
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), batch_input_shape=(800, 1216)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.randint(0, args.classes, (n, ), generator=gen))
        samples.append(sample)
    return samples


def make_inputs(args: argparse.Namespace, samples: List[DetDataSample]):
    """Decoder states [L, B, D + Q, C], L + 1 references, encoder proposals, dn_meta (DINO's
    dynamic groups: num_dn_queries // max boxes groups of positive + negative queries)."""
    max_gts = max(len(s.gt_instances) for s in samples)
    groups = max(args.dn_queries // max_gts, 1)
    dn_meta = dict(num_denoising_queries=2 * groups * max_gts, num_denoising_groups=groups)
    gen = torch.Generator().manual_seed(1)
    total, b = dn_meta['num_denoising_queries'] + args.queries, args.batch
    inputs = dict(
        hidden_states=torch.randn(args.layers, b, total, args.dims, generator=gen),
        references=torch.rand(args.layers + 1, b, total, 4, generator=gen) * 0.6 + 0.2,
        enc_outputs_class=torch.randn(b, args.queries, args.classes, generator=gen),
        enc_outputs_coord=torch.rand(b, args.queries, 4, generator=gen) * 0.6 + 0.2)
    return inputs, dn_meta


def step(head, inputs: Dict[str, torch.Tensor], samples, dn_meta) -> Dict[str, torch.Tensor]:
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    losses = head.loss(leaves['hidden_states'], list(leaves['references']),
                       leaves['enc_outputs_class'], leaves['enc_outputs_coord'], samples, dn_meta)
    sum(losses.values()).backward()
    return losses


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ref = MMDetDINOHead(**head_cfg('HungarianAssigner', args))
    ours = DINOHead(**head_cfg('mmext.HungarianAssigner', args))
    ours.load_state_dict(ref.state_dict(), strict=True)
    samples = make_samples(args)
    inputs, dn_meta = make_inputs(args, samples)
    heads: Dict[str, Callable[[], dict]] = {
        'mmdet': lambda: step(ref, inputs, samples, dn_meta),
        'mmext': lambda: step(ours, inputs, samples, dn_meta),
    }
    results = {name: fn() for name, fn in heads.items()}
    diff = max(float((results['mmext'][k] - v).detach().abs()) for k, v in results['mmdet'].items())
    if list(results['mmext']) != list(results['mmdet']) or diff > 1e-4:
        raise SystemExit(f'losses differ (max |mmext - mmdet| = {diff:.2e}); not timing')
    samples_t = interleaved(heads, args.repeats, warmup=0)  # the check above warmed up
    wall = {name: [x.wall for x in ss] for name, ss in samples_t.items()}
    cpu = {name: [x.cpu for x in ss] for name, ss in samples_t.items()}
    med = {name: statistics.median(t) * 1e3 for name, t in wall.items()}
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.batch} images x '
          f'({args.queries} + {dn_meta["num_denoising_queries"]} dn) queries x {args.layers} '
          f'layers, ~{args.boxes} boxes/img, {len(results["mmdet"])} loss terms; max |loss mmext '
          f'- mmdet| {diff:.1e}')
    for name, ms in med.items():
        print(f'{name:6s} loss+backward median {ms:8.2f} ms (CPU '
              f'{statistics.median(cpu[name]) * 1e3:8.2f} ms)  mmdet/this {med["mmdet"] / ms:.2f}x')


if __name__ == '__main__':
    main()
