"""Time MaskFormerHead forward + loss + backward: mmext vs mmseg (same settings, same weights).

Both heads get the ADE20K config's architecture (FPN pixel decoder, 6 decoder layers of width
256, 100 queries, 150 classes; dropout off so results are deterministic), identical weights
(mmseg's state dict loads into ours unchanged) and the same R50-shaped features and label maps.
Their losses must agree before anything is timed; the steps then run interleaved
(tools/benchmark/timing.py).  Peak memory of one step is measured in a fresh process per head
(tools/benchmark/memory.py).

    python tools/benchmark/bench_maskformer_head.py [--batch 2] [--size 256] [--repeats 5]
"""
import argparse
import copy
import statistics
from typing import Callable, Dict, Optional, Sequence

import torch
from memory import measure_in_subprocess, report_step_peak  # tools/benchmark/memory.py
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from timing import interleaved  # tools/benchmark/timing.py

from mmext.models.seg_heads import MaskFormerHead

CANDIDATES = ('mmseg', 'mmext')
IN_CHANNELS = [256, 512, 1024, 2048]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=256, help='input side (ADE20K crop: 512)')
    parser.add_argument('--classes', type=int, default=150)
    parser.add_argument('--classes-per-image', type=int, default=12)
    parser.add_argument('--queries', type=int, default=100)
    parser.add_argument('--layers', type=int, default=6)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--skip-memory', action='store_true')
    parser.add_argument('--memory-child', choices=CANDIDATES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def head_cfg(args: argparse.Namespace, ours: bool) -> dict:
    s = '' if ours else 'mmdet.'
    attn = dict(embed_dims=256, num_heads=8, attn_drop=0.0, proj_drop=0.0, batch_first=True)
    return dict(
        in_channels=IN_CHANNELS,
        feat_channels=256,
        out_channels=256,
        num_classes=args.classes,
        num_queries=args.queries,
        in_index=[0, 1, 2, 3],
        pixel_decoder=dict(
            type=f'{s}PixelDecoder',
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU')),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=128, normalize=True),
        transformer_decoder=dict(
            num_layers=args.layers,
            return_intermediate=True,
            layer_cfg=dict(
                self_attn_cfg=attn,
                cross_attn_cfg=dict(attn),
                ffn_cfg=dict(
                    embed_dims=256,
                    feedforward_channels=2048,
                    num_fcs=2,
                    ffn_drop=0.0,
                    act_cfg=dict(type='ReLU', inplace=True)))),
        loss_cls=dict(
            type='mmdet.CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            reduction='mean',
            class_weight=[1.0] * args.classes + [0.1]),
        loss_mask=dict(
            type='mmdet.FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            reduction='mean',
            loss_weight=20.0),
        loss_dice=dict(
            type=f'{s}DiceLoss',
            use_sigmoid=True,
            activate=True,
            reduction='mean',
            naive_dice=True,
            eps=1.0,
            loss_weight=1.0),
        train_cfg=dict(
            assigner=dict(
                type=f'{s}HungarianAssigner',
                match_costs=[
                    dict(type=f'{s}ClassificationCost', weight=1.0),
                    dict(type=f'{s}FocalLossCost', weight=20.0, binary_input=True),
                    dict(type=f'{s}DiceCost', weight=1.0, pred_act=True, eps=1.0)
                ]),
            sampler=dict(type='mmdet.MaskPseudoSampler')))


def build(name: str, args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == 'mmseg':
        from mmdet.utils import register_all_modules as register_det
        from mmseg.models.decode_heads import MaskFormerHead as MMSegMaskFormerHead
        register_det(init_default_scope=False)
        with DefaultScope.overwrite_default_scope('mmseg'):
            head = MMSegMaskFormerHead(**ConfigDict(head_cfg(args, ours=False)))
        with torch.no_grad():  # the shared weights: seeded, then loaded into ours
            for p in head.parameters():
                p.copy_(torch.randn_like(p) * (0.05 if p.dim() > 1 else 0.01))
    else:
        head = MaskFormerHead(**head_cfg(args, ours=True))
        head.load_state_dict(build('mmseg', args).state_dict(), strict=True)
    return head.to(args.device).train()


def inputs(args: argparse.Namespace):
    gen = torch.Generator().manual_seed(1)
    feats = [
        torch.randn(args.batch, c, args.size // 2**(i + 2), args.size // 2**(i + 2),
                    generator=gen).to(args.device) for i, c in enumerate(IN_CHANNELS)
    ]
    samples = []
    for _ in range(args.batch):
        classes = torch.randperm(args.classes, generator=gen)[:args.classes_per_image]
        coarse = classes[torch.randint(0, len(classes), (1, 1, 8, 8), generator=gen)]
        seg = torch.nn.functional.interpolate(
            coarse.float(), size=(args.size, args.size), mode='nearest')[0].long()
        seg[:, :, -args.size // 16:] = 255  # a band of ignored pixels
        s = SegDataSample(
            metainfo=dict(img_shape=(args.size, args.size), pad_shape=(args.size, args.size)))
        s.gt_sem_seg = PixelData(data=seg.to(args.device))
        samples.append(s)
    return feats, samples


def step_fn(head, feats, samples) -> Callable[[], Dict[str, torch.Tensor]]:

    def step():
        head.zero_grad(set_to_none=True)
        losses = head.loss(feats, copy.deepcopy(samples), {})
        sum(losses.values()).sum().backward()
        return losses

    return step


def memory_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: peak memory of one training step of one candidate."""
    torch.set_num_threads(args.threads)
    head = build(args.memory_child, args)
    report_step_peak(step_fn(head, *inputs(args)), args.device)


def measure_memory(name: str, args: argparse.Namespace) -> float:
    argv = []
    for key in ('batch', 'size', 'classes', 'classes_per_image', 'queries', 'layers', 'threads',
                'device'):
        argv += [f'--{key.replace("_", "-")}', str(getattr(args, key))]
    return measure_in_subprocess(__file__, argv, name)[0]


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return
    torch.set_num_threads(args.threads)
    heads = {name: build(name, args) for name in CANDIDATES}
    feats, samples = inputs(args)
    steps = {name: step_fn(h, feats, samples) for name, h in heads.items()}
    first = {name: fn() for name, fn in steps.items()}  # also the warm-up
    diff = max(
        float((first['mmext'][k] - first['mmseg'][k].reshape(())).detach().abs())
        for k in first['mmseg'])
    if diff > 1e-4:
        raise SystemExit(f'losses differ (max |mmext - mmseg| = {diff:.2e}); not timing')
    samples_t = interleaved(steps, args.repeats, warmup=0, device=args.device)
    wall = {n: statistics.median(s.wall for s in ss) for n, ss in samples_t.items()}
    cpu = {n: statistics.median(s.cpu for s in ss) for n, ss in samples_t.items()}
    mem: Dict[str, float] = {} if args.skip_memory else {
        n: measure_memory(n, args)
        for n in CANDIDATES
    }
    print(f'torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} '
          f'thread(s); batch {args.batch} x {args.size}x{args.size}, {args.classes} classes '
          f'(~{args.classes_per_image}/image), {args.queries} queries, {args.layers} layers; '
          f'max |loss mmext - mmseg| {diff:.1e}')
    for n in CANDIDATES:
        extra = f'  peak memory +{mem[n]:8.1f} MiB' if mem else ''
        print(f'{n:6s} forward+loss+backward median {wall[n] * 1e3:8.1f} ms wall '
              f'({cpu[n] * 1e3:8.1f} ms cpu){extra}')
    line = (f'mmseg/mmext time ratio {wall["mmseg"] / wall["mmext"]:.2f}x (wall), '
            f'{cpu["mmseg"] / cpu["mmext"]:.2f}x (cpu)')
    if mem:
        line += f'; peak memory mmext/mmseg {mem["mmext"] / max(mem["mmseg"], 1e-9):.2f}x'
    print(line)


if __name__ == '__main__':
    main()
