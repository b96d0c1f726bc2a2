"""Evaluate a trained checkpoint on the config's test set.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl] [--show-dir DIR]
                         [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
    bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [same options]
"""
import process_defaults  # noqa: F401 isort:skip  (first: OpenMP reads its env when torch loads)
import argparse
import sys

from mmengine.config import Config
from mmengine.evaluator import DumpResults
from runner_args import add_runner_args, apply_runner_args, parse_runner_args

import mmext  # noqa: F401  (registry nodes, safe checkpoint loading)
from mmext.registry import RUNNERS, explained_unknown_types


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='also dump the raw predictions to this .pkl file')
    parser.add_argument(
        '--show-dir',
        help='draw predictions into this folder (inside the work '
        'dir) when the config has a visualization hook')
    add_runner_args(parser)
    return parse_runner_args(parser, argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = apply_runner_args(Config.fromfile(args.config), args)
    cfg.load_from = args.checkpoint

    if args.show_dir:
        vis_hook = cfg.get('default_hooks', {}).get('visualization')
        if vis_hook is None:
            raise SystemExit(f'--show-dir: {args.config} has no default_hooks.visualization')
        vis_hook.update(draw=True, test_out_dir=args.show_dir)

    if args.out and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'--out must name a .pkl file, got {args.out}')
    with explained_unknown_types():
        runner = RUNNERS.build(cfg)
        if args.out:
            runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
        try:
            runner.test()
        except KeyboardInterrupt:
            print('Interrupted.', file=sys.stderr)
            raise SystemExit(130) from None  # the shell's code for Ctrl-C


if __name__ == '__main__':
    main()
