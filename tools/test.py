"""Evaluate a trained checkpoint on the config's test set.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                         [--show-dir DIR] [--show] [--wait-time S] [--score-thr T] [--interval N]
                         [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
    bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [same options]

``--show-dir`` and ``--show`` turn on the config's ``default_hooks.visualization`` (mmext's
VisualizationHook in our detection and segmentation configs): each test image is drawn with its
ground truth and prediction.  A relative ``--show-dir`` is taken inside the run's log dir,
``<work_dir>/<timestamp>/DIR``; an absolute one is used as is (docs/tools/visualization.md).
"""
import process_defaults  # noqa: F401 isort:skip  (first: OpenMP reads its env when torch loads)
import argparse
import sys

from mmengine.config import Config
from mmengine.evaluator import DumpResults
from runner_args import add_runner_args, apply_runner_args, parse_runner_args

import mmext  # noqa: F401  (registry nodes, safe checkpoint loading)
from mmext.registry import RUNNERS, explained_unknown_types
from mmext.utils.dist import close_process_group
from mmext.utils.progress import announce_metrics
from mmext.visualization.display import NO_DISPLAY_MESSAGE, has_display


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='also dump the raw predictions to this .pkl file')
    parser.add_argument(
        '--show-dir',
        help='draw each test image with its ground truth and prediction into this folder; a '
        'relative path is inside the run\'s log dir (<work_dir>/<timestamp>/DIR), an absolute '
        'one is used as is (needs default_hooks.visualization in the config)')
    parser.add_argument(
        '--show',
        action='store_true',
        help='show each drawing in a window (needs a display; see --show-dir otherwise)')
    parser.add_argument(
        '--wait-time',
        type=float,
        default=2.0,
        help='seconds each --show window stays (0: until a key is pressed)')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=None,
        help='detection: lowest prediction score drawn, exclusive (default: the '
        "visualizer's, 0.3 in our configs)")
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='with --show-dir/--show, draw every N-th test image (default 1: all)')
    add_runner_args(parser)
    return parse_runner_args(parser, argv)


def enable_visualization(cfg: Config, args: argparse.Namespace) -> None:
    """Turn the config's visualization hook on as ``--show-dir``/``--show`` ask."""
    if not (args.show_dir or args.show):
        if args.score_thr is not None:
            print('note: --score-thr only applies with --show-dir or --show', file=sys.stderr)
        return
    flag = '--show-dir' if args.show_dir else '--show'
    if args.show and not has_display():
        raise SystemExit(f'--show: {NO_DISPLAY_MESSAGE}')
    if args.interval < 1:
        raise SystemExit(f'--interval must be >= 1, got {args.interval}')
    vis_hook = cfg.get('default_hooks', {}).get('visualization')
    if vis_hook is None:
        raise SystemExit(f'{flag}: {args.config} has no default_hooks.visualization; add '
                         "visualization=dict(type='mmext.VisualizationHook') to its "
                         'default_hooks and a visualizer (docs/tools/visualization.md)')
    vis_hook.update(draw=True, interval=args.interval)
    if args.show_dir:
        vis_hook['test_out_dir'] = args.show_dir
    if args.show:
        vis_hook.update(show=True, wait_time=args.wait_time)
    if args.score_thr is not None:
        vis_hook['score_thr'] = args.score_thr


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = apply_runner_args(Config.fromfile(args.config), args)
    cfg.load_from = args.checkpoint
    enable_visualization(cfg, args)

    if args.out and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'--out must name a .pkl file, got {args.out}')
    with explained_unknown_types():
        runner = RUNNERS.build(cfg)
        if args.out:
            runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
        # COCO evaluation or full ranking over every user runs after the loop's bar: say so
        announce_metrics(runner.test_evaluator)
        try:
            runner.test()
        except KeyboardInterrupt:
            print('Interrupted.', file=sys.stderr)
            raise SystemExit(130) from None  # the shell's code for Ctrl-C
        close_process_group()  # a gloo rank may abort at exit otherwise


if __name__ == '__main__':
    main()
