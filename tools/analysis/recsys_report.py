"""Plots of a recommender run: ranking metrics per epoch, and hit rate by item popularity.

    python tools/analysis/recsys_report.py curves WORK_DIR [WORK_DIR ...] [--out FILE]
    python tools/analysis/recsys_report.py popularity CONFIG CHECKPOINT [--out-dir DIR]
        [--buckets 5] [--scheme quantile|log2] [--cfg-options k=v ...]

``curves`` reads mmengine's ``<WORK_DIR>/<timestamp>/vis_data/scalars.json`` (the newest run of
each work dir, or a ``scalars.json`` given directly) and draws every ranking metric the
validation logged (``hr@10``, ``ndcg@10``, ``mrr@10``, ``recall@20``, with or without a metric
prefix): one panel per metric, one line per cut-off K (and per run), against the epoch (the
iteration for iteration-based runs).  Default output: ``ranking_curves.png`` beside the first
work dir.

``popularity`` runs the config's test set on the checkpoint (the config's test loop, as
``tools/test.py`` does), puts every evaluated event (a user, for leave-one-out) in a bucket by
the **training popularity** of its target item (training interactions with it,
``dataset.item_counts``), and reports the config's ranking metrics per bucket with the same
ranking (ties, excluded items) as the test metric: the event-weighted mean of the buckets is the
test metric, which the tool checks.  Writes into ``--out-dir`` (default
``work_dirs/<config name>/popularity``):

* ``popularity_breakdown.png``: bars of HR@K (or Recall@K) and NDCG@K (``--metrics``) per
  bucket, the overall values as dashed lines, and below them the number of events per bucket;
* ``popularity_breakdown.json``: buckets (popularity range, events, every metric), overall, and
  the test metrics of the same run.

Semantics in docs/tools/recsys_report.md and ``mmext/evaluation/popularity_breakdown.py``.
"""
import argparse
import copy
import json
import math
import os.path as osp
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/: shared entry-point code
import process_defaults  # noqa: E402,F401 isort:skip  (before torch: OpenMP reads env once)
import matplotlib  # noqa: E402

matplotlib.use('Agg')  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

#: a RankingMetric key, optionally prefixed: 'hr@10', 'val/ndcg@20'
RANKING_KEY = re.compile(r'^(?:(?P<prefix>.+)/)?(?P<metric>recall|hr|mrr|ndcg)@(?P<k>\d+)$')
_TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')  # mmengine's run directory names
_METRIC_ORDER = ('hr', 'recall', 'ndcg', 'mrr')


# ----------------------------------------------------------------------------- curves
def find_scalars(path: Path) -> Path:
    """``path`` itself if it is a file, else ``vis_data/scalars.json`` of ``path`` or of its
    newest ``<timestamp>`` run directory that has one."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / 'vis_data' / 'scalars.json').is_file():
        return path / 'vis_data' / 'scalars.json'
    runs = sorted(d for d in path.glob('*/vis_data/scalars.json') if _TIMESTAMP.match(d.parts[-3]))
    if not runs:
        raise FileNotFoundError(f'no <timestamp>/vis_data/scalars.json under {path}: was it the '
                                'work_dir of a training run?')
    return runs[-1]


def load_ranking_curves(scalars: Path) -> Tuple[Dict[str, Tuple[List[float], List[float]]], str]:
    """Every ranking-metric key of a ``scalars.json`` as ``key -> (steps, values)``, and the
    step's unit (``'epoch'`` when the run logged epochs, else ``'iteration'``).

    Validation lines are those holding a ranking key; their ``step`` is the epoch for
    epoch-based runs (mmengine's LoggerHook default), the iteration otherwise.
    """
    curves: Dict[str, Tuple[List[float], List[float]]] = {}
    by_epoch = False
    with open(scalars) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise ValueError(f'{scalars}:{lineno} is not a JSON line: {e}') from None
            by_epoch |= 'epoch' in record
            for key, value in record.items():
                if RANKING_KEY.match(key) and isinstance(value, (int, float)):
                    xs, ys = curves.setdefault(key, ([], []))
                    xs.append(float(record.get('step', len(xs) + 1)))
                    ys.append(float(value))
    return curves, 'epoch' if by_epoch else 'iteration'


def _metric_sort_key(metric: str) -> Tuple[int, str]:
    return (_METRIC_ORDER.index(metric) if metric in _METRIC_ORDER else len(_METRIC_ORDER), metric)


def plot_ranking_curves(scalars_files: Sequence[Path], out_file: Path) -> Path:
    """One panel per ranking metric (HR, Recall, NDCG, MRR), a line per K and per run."""
    runs = []
    for path in scalars_files:
        curves, unit = load_ranking_curves(path)
        runs.append((Path(path), curves, unit))
    metrics = sorted({RANKING_KEY.match(k)['metric']
                      for _, curves, _ in runs
                      for k in curves},
                     key=_metric_sort_key)
    if not metrics:
        raise ValueError(f'no ranking metric (hr@K, ndcg@K, mrr@K, recall@K) in '
                         f'{", ".join(str(p) for p in scalars_files)}: did the run validate '
                         'with mmext.RankingMetric?')
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for path, curves, unit in runs:
            run_name = path.parents[2].name if len(path.parents) > 2 else str(path)
            for key in sorted(curves, key=lambda k: int(RANKING_KEY.match(k)['k'])):
                match = RANKING_KEY.match(key)
                if match['metric'] != metric:
                    continue
                label = key if len(runs) == 1 else f'{run_name}: {key}'
                ax.plot(*curves[key], marker='o', markersize=3, label=label)
            ax.set_xlabel(unit)
            if unit == 'epoch':
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f'{metric.upper()}@K')
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle('validation ranking metrics: ' + ', '.join(str(p) for p, _, _ in runs), fontsize=7)
    fig.tight_layout()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


# ----------------------------------------------------------------------------- popularity
def ranking_metric_cfg(cfg: Config) -> Dict[str, Any]:
    """The keyword arguments of the config's test ``RankingMetric`` (the first one)."""
    evaluator = cfg.get('test_evaluator')
    entries = evaluator.get('metrics', [evaluator]) if isinstance(evaluator, dict) else evaluator
    if isinstance(entries, dict):
        entries = [entries]
    for entry in entries or []:
        if isinstance(entry, dict) and str(entry.get('type', '')).split('.')[-1] == \
                'RankingMetric':
            kwargs = {k: v for k, v in entry.items() if k not in ('type', 'prefix')}
            for key in ('topk', 'metrics'):
                if key in kwargs and not isinstance(kwargs[key], (str, int)):
                    kwargs[key] = tuple(kwargs[key])
            return kwargs
    raise SystemExit('the config\'s test_evaluator has no RankingMetric: the popularity '
                     'breakdown needs a recommender evaluated with mmext.RankingMetric')


def run_breakdown(cfg: Config,
                  checkpoint: str,
                  work_dir: Path,
                  num_buckets: int = 5,
                  scheme: str = 'quantile') -> Dict[str, Any]:
    """Run the config's test loop on ``checkpoint`` with a :class:`RankRecorder` beside the
    config's metrics; return the breakdown plus the test metrics of that same run."""
    from mmext.evaluation.popularity_breakdown import RankRecorder, popularity_breakdown
    from mmext.registry import RUNNERS, explained_unknown_types

    metric_kwargs = ranking_metric_cfg(cfg)
    cfg = copy.deepcopy(cfg)
    cfg.load_from = checkpoint
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    cfg.setdefault('runner_type', 'mmext.Runner')
    with explained_unknown_types():
        runner = RUNNERS.build(cfg)
        dataset = runner.test_dataloader.dataset
        item_counts = getattr(dataset, 'item_counts', None)
        if item_counts is None:
            raise SystemExit(f'the test dataset ({type(dataset).__name__}) has no item_counts '
                             '(training interactions per item id); mmext\'s recsys datasets '
                             'have one')
        item_counts = np.asarray(item_counts)
        recorder = RankRecorder(num_ids=len(item_counts), **metric_kwargs)
        runner.test_evaluator.metrics.append(recorder)
        test_metrics = runner.test()
    result = popularity_breakdown(recorder.records, item_counts, recorder.topk, recorder.metrics,
                                  recorder.tie_policy, num_buckets, scheme)
    result.update(
        topk=list(recorder.topk),
        metrics=list(recorder.metrics),
        tie_policy=recorder.tie_policy,
        exclude_seen=recorder.exclude_seen,
        test_metrics={
            k: float(v)
            for k, v in (test_metrics or {}).items() if isinstance(v, (int, float))
        })
    check_against_test(result)
    return result


def check_against_test(result: Dict[str, Any], tol: float = 1e-9) -> None:
    """The overall breakdown must be the test metric (same events, same ranking): raise if not."""
    for key, value in result['overall'].items():
        if key == 'num_events':
            continue
        reported = [v for k, v in result['test_metrics'].items() if k.split('/')[-1] == key]
        if reported and abs(reported[0] - value) > tol:
            raise RuntimeError(f'popularity breakdown: overall {key} = {value:.6f} but the test '
                               f'metric is {reported[0]:.6f}')


def bucket_label(bucket: Dict[str, Any]) -> str:
    low, high = bucket['low'], bucket['high']
    return str(low) if low == high else f'{low}–{high}'


def plot_breakdown(result: Dict[str, Any],
                   out_file: Path,
                   keys: Sequence[str],
                   title: str = '') -> Path:
    """Grouped bars of ``keys`` (e.g. ``hr@10``, ``ndcg@10``) per popularity bucket, overall as
    dashed lines, and the number of events per bucket in a panel below."""
    buckets = result['buckets']
    x = np.arange(len(buckets))
    width = 0.8 / max(1, len(keys))
    fig, (ax, ax_n) = plt.subplots(
        2,
        1,
        figsize=(max(6.0, (0.3 * len(keys) + 0.5) * len(buckets) + 2.5), 5.5),
        sharex=True,
        gridspec_kw=dict(height_ratios=(3, 1)))
    colours = plt.get_cmap('tab10')
    for i, key in enumerate(keys):
        heights = [b[key] for b in buckets]
        bars = ax.bar(
            x + (i - (len(keys) - 1) / 2) * width, heights, width, label=key, color=colours(i))
        ax.bar_label(
            bars,
            labels=[f'{h:.2f}' for h in heights],
            fontsize=7 if len(keys) <= 2 else 6,
            padding=1,
            rotation=0 if len(keys) <= 2 else 90)
        ax.axhline(
            result['overall'][key],
            color=colours(i),
            linestyle='--',
            linewidth=1,
            label=f'{key} overall {result["overall"][key]:.3f}')
    ax.set_ylabel('metric')
    ax.set_ylim(0, min(1.15, max([b[k] for b in buckets for k in keys] + [0.05]) * 1.25))
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis='y', alpha=0.3)
    ax.set_title(title, fontsize=9)
    counts = [b['num_events'] for b in buckets]
    bars = ax_n.bar(x, counts, 0.6, color='grey')
    ax_n.bar_label(bars, fontsize=7, padding=1)
    ax_n.set_ylabel('events')
    ax_n.set_ylim(0, max(counts) * 1.3)
    ax_n.set_xticks(x)
    ax_n.set_xticklabels([bucket_label(b) for b in buckets], fontsize=8)
    ax_n.set_xlabel(f'training interactions of the target item ({result["scheme"]} buckets)')
    fig.tight_layout()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


def format_breakdown(result: Dict[str, Any], keys: Sequence[str]) -> str:
    head = f'{"popularity":>12} {"events":>7}' + ''.join(f'{k:>10}' for k in keys)
    lines = [head]
    for b in result['buckets'] + [dict(result['overall'], low='all', high='all')]:
        lines.append(f'{bucket_label(b):>12} {b["num_events"]:>7}' + ''.join(f'{b[k]:>10.4f}'
                                                                             for k in keys))
    return '\n'.join(lines)


def _plotted_keys(result: Dict[str, Any], metrics: Optional[Sequence[str]]) -> List[str]:
    if metrics is None:  # HR and Recall coincide with one relevant item: draw one of them
        metrics = ['hr' if 'hr' in result['metrics'] else 'recall', 'ndcg']
    keys = [f'{m}@{k}' for m in metrics for k in result['topk'] if f'{m}@{k}' in result['overall']]
    if not keys:
        raise SystemExit(f'none of --metrics {list(metrics)} was computed; the config\'s '
                         f'RankingMetric has {result["metrics"]} at K = {result["topk"]}')
    return keys


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Plots of a recommender run')
    sub = parser.add_subparsers(dest='command', required=True)
    curves = sub.add_parser('curves', help='ranking metrics per epoch from scalars.json')
    curves.add_argument(
        'runs', nargs='+', help='work dirs (newest <timestamp>/vis_data/scalars.json) or files')
    curves.add_argument('--out', help='PNG to write (default: <first run>/ranking_curves.png)')
    pop = sub.add_parser('popularity', help='metrics per popularity bucket of the target item')
    pop.add_argument('config', help='the training/test config')
    pop.add_argument('checkpoint', help='the checkpoint to evaluate')
    pop.add_argument('--out-dir', help='default: work_dirs/<config name>/popularity')
    pop.add_argument('--buckets', type=int, default=5, help='quantile buckets (at most)')
    pop.add_argument('--scheme', choices=('quantile', 'log2'), default='quantile')
    pop.add_argument(
        '--metrics',
        nargs='+',
        help='metrics drawn, at every K (default: hr, or recall without hr, and ndcg)')
    pop.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, as for tools/test.py')
    return parser.parse_args(argv)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value


def main(argv: Optional[List[str]] = None) -> Dict[str, Path]:
    args = parse_args(argv)
    if args.command == 'curves':
        files = [find_scalars(Path(r)) for r in args.runs]
        out = Path(args.out) if args.out else (Path(args.runs[0]) if Path(args.runs[0]).is_dir()
                                               else files[0].parent) / 'ranking_curves.png'
        written = dict(curves=plot_ranking_curves(files, out))
    else:
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        out_dir = Path(args.out_dir or osp.join('work_dirs', Path(args.config).stem, 'popularity'))
        out_dir.mkdir(parents=True, exist_ok=True)
        result = run_breakdown(cfg, args.checkpoint, out_dir, args.buckets, args.scheme)
        result.update(config=str(args.config), checkpoint=str(args.checkpoint))
        keys = _plotted_keys(result, args.metrics)
        print(format_breakdown(result, keys))
        title = (f'{Path(args.config).stem}: {result["overall"]["num_events"]} events, '
                 f'tie policy {result["tie_policy"]}, exclude_seen={result["exclude_seen"]}')
        written = dict(
            png=plot_breakdown(result, out_dir / 'popularity_breakdown.png', keys, title),
            json=out_dir / 'popularity_breakdown.json')
        written['json'].write_text(json.dumps(_nan_to_none(result), indent=2) + '\n')
    for path in written.values():
        print(f'wrote {path}')
    return written


if __name__ == '__main__':
    main()
