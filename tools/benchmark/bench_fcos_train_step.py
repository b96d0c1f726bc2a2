"""Time one whole FCOS training step with mmext's FCOSHead and with mmdet's, side by side.

Both detectors are built from the same config (only ``model.bbox_head.type`` differs), share
weights, and run ``model.train_step`` (data preprocessing, backbone, neck, head, targets, losses,
backward, optimizer step) on the same synthetic batch.  Runs alternate between the two models so
that drift in machine load hits both alike; medians are reported.

    python tools/benchmark/bench_fcos_train_step.py \
        [--config configs/fcos/fcos_r18_fpn_shapes-128_demo.py] [--batch 16] [--img 128]
"""
import argparse
import copy
import statistics
from typing import Dict, Optional, Sequence

import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from timing import interleaved  # tools/benchmark/timing.py

import mmext  # noqa: F401
from mmext.registry import MODELS


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='configs/fcos/fcos_r18_fpn_shapes-128_demo.py')
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--img', type=int, default=128, help='square image size')
    parser.add_argument('--boxes', type=int, default=6, help='gt boxes per image')
    parser.add_argument('--repeats', type=int, default=15, help='timed steps per model')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def make_batch(args: argparse.Namespace, num_classes: int) -> Dict[str, list]:
    gen = torch.Generator().manual_seed(args.seed)
    inputs, samples = [], []
    for _ in range(args.batch):
        inputs.append(
            torch.randint(0, 256, (3, args.img, args.img), generator=gen, dtype=torch.uint8))
        xy = torch.rand(args.boxes, 2, generator=gen) * args.img * 0.7
        wh = 8 + torch.rand(args.boxes, 2, generator=gen) * args.img * 0.3
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(args.img, args.img),
                ori_shape=(args.img, args.img),
                scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, (xy + wh).clamp(max=args.img)], 1),
            labels=torch.randint(0, num_classes, (args.boxes, ), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    models, optims = {}, {}
    with DefaultScope.overwrite_default_scope('mmext'):
        for name, head_type in (('mmdet', 'mmdet.FCOSHead'), ('mmext', 'mmext.FCOSHead')):
            model_cfg = copy.deepcopy(cfg.model)
            model_cfg.bbox_head.type = head_type
            torch.manual_seed(args.seed)
            models[name] = MODELS.build(model_cfg)
    models['mmext'].load_state_dict(models['mmdet'].state_dict())
    for name, model in models.items():
        model.train()
        optims[name] = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    batch = make_batch(args, cfg.model.bbox_head.num_classes)

    # The first step from identical weights must give identical losses.
    first = {n: models[n].train_step(copy.deepcopy(batch), optims[n]) for n in models}
    diffs = {k: abs(float(first['mmdet'][k]) - float(first['mmext'][k])) for k in first['mmdet']}
    samples = interleaved({n: (lambda n=n: models[n].train_step(batch, optims[n]))
                           for n in models},
                          args.repeats,
                          warmup=args.warmup)

    med = {n: statistics.median(x.wall for x in ss) * 1e3 for n, ss in samples.items()}
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; {args.config}; '
          f'batch {args.batch} x {args.img}^2, {args.boxes} boxes/img')
    print('first-step loss |mmdet - mmext|: ' + ', '.join(f'{k} {v:.2e}' for k, v in diffs.items()))
    print(f'train step median ms: mmdet {med["mmdet"]:.1f}  mmext {med["mmext"]:.1f}  '
          f'ratio mmdet/mmext {med["mmdet"] / med["mmext"]:.2f}x')


if __name__ == '__main__':
    main()
