"""Train a model from an mmext (or mmdet/mmseg/mmpretrain + custom_imports) config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                          [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
    bash tools/dist_train.sh CONFIG NUM_PROCS [same options]
"""
import process_defaults  # noqa: F401 isort:skip  (first: OpenMP reads its env when torch loads)
import argparse
import os.path as osp
import signal
import sys

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from runner_args import add_runner_args, apply_runner_args, parse_runner_args

import mmext  # noqa: F401  (registry nodes, safe checkpoint loading)
from mmext.registry import RUNNERS, explained_unknown_types
from mmext.utils.dist import close_process_group


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model with mmengine\'s Runner')
    parser.add_argument('config', help='config file path')
    add_runner_args(parser)
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CKPT',
        help='resume from CKPT; without a path, from the latest checkpoint '
        'in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (GPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual/base batch size')
    return parse_runner_args(parser, argv)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line flags to the config the way OpenMMLab's train scripts do."""
    apply_runner_args(cfg, args)

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


def interrupted_message(work_dir: str) -> str:
    """One line for Ctrl-C: where the newest checkpoint is and how to resume from it."""
    last = osp.join(work_dir, 'last_checkpoint')  # written by mmengine's CheckpointHook
    checkpoint = open(last).read().strip() if osp.isfile(last) else None
    if checkpoint and osp.isfile(checkpoint):
        return (f'Interrupted. Last checkpoint: {checkpoint} (continue with --resume; '
                f'work dir {work_dir})')
    return f'Interrupted before any checkpoint was saved (work dir {work_dir})'


class _InterruptAtIteration(Hook):
    """Ctrl-C that cannot be lost.  Python raises KeyboardInterrupt wherever the main thread
    is; if that is inside a ``__del__`` or a weakref callback (a DataLoader iterator dropped at
    the end of an epoch, a tensor's deleter), Python prints "Exception ignored" and training
    goes on (seen in CI: still training 120 s after SIGINT).  The SIGINT handler also records
    the interrupt, and this hook raises it again at the next iteration or epoch boundary."""
    priority = 'HIGHEST'

    def __init__(self) -> None:
        self.hit = False
        signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame) -> None:
        self.hit = True
        raise KeyboardInterrupt

    def _check(self, *args, **kwargs) -> None:
        if self.hit:
            raise KeyboardInterrupt

    before_train_iter = after_train_iter = before_train_epoch = after_train_epoch = _check
    before_val_iter = before_test_iter = _check


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    with explained_unknown_types():
        runner = RUNNERS.build(cfg)
        runner.register_hook(_InterruptAtIteration())
        try:
            runner.train()
        except KeyboardInterrupt:
            # the traceback of wherever Ctrl-C landed says nothing useful
            print(interrupted_message(runner.work_dir), file=sys.stderr)
            raise SystemExit(130) from None  # the shell's code for Ctrl-C
        close_process_group()  # a gloo rank may abort at exit otherwise


if __name__ == '__main__':
    main()
