"""Train a model from an mmext (or mmdet/mmseg/mmpretrain + custom_imports) config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                          [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
    bash tools/dist_train.sh CONFIG NUM_PROCS [same options]
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction

import mmext  # noqa: F401  (registry nodes, safe checkpoint loading)
from mmext.registry import RUNNERS


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model with mmengine\'s Runner')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CKPT',
                        help='resume from CKPT; without a path, from the latest checkpoint '
                        'in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual/base batch size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_cfg.max_epochs=3')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line flags to the config the way OpenMMLab's train scripts do."""
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        if not torch.cuda.is_available():
            sys.exit('--amp needs a GPU: mmengine\'s AmpOptimWrapper has no CPU mode')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP is already enabled in the config')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            sys.exit(f'--auto-scale-lr: {args.config} has no auto_scale_lr.base_batch_size, '
                     'the batch size its learning rate was tuned for')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    # runner_type defaults to mmext's Runner (CPU-capable distributed training).
    cfg.setdefault('runner_type', 'mmext.Runner')
    runner = RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
