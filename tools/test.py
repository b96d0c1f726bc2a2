"""Evaluate a trained checkpoint on the config's test set.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl] [--show-dir DIR]
                         [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
    bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [same options]
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.evaluator import DumpResults

import mmext  # noqa: F401  (registry nodes, safe checkpoint loading)
from mmext.registry import RUNNERS


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation metrics are written')
    parser.add_argument('--out', help='also dump the raw predictions to this .pkl file')
    parser.add_argument('--show-dir', help='draw predictions into this folder (inside the work '
                        'dir) when the config has a visualization hook')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint

    if args.show_dir:
        vis_hook = cfg.get('default_hooks', {}).get('visualization')
        if vis_hook is None:
            raise SystemExit(f'--show-dir: {args.config} has no default_hooks.visualization')
        vis_hook.update(draw=True, test_out_dir=args.show_dir)

    cfg.setdefault('runner_type', 'mmext.Runner')
    runner = RUNNERS.build(cfg)
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit(f'--out must name a .pkl file, got {args.out}')
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
