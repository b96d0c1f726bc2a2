"""Plot the scalars of training runs and compute their iteration time, from mmengine's logs.

    python tools/analysis/analyze_logs.py plot_curve RUN [RUN ...] --keys loss [KEY ...] \
        [--xaxis iter|epoch] [--legend NAME ...] [--subplots] [--title TITLE] [--out curve.png]
    python tools/analysis/analyze_logs.py cal_train_time RUN [RUN ...] [--warmup 5]

A RUN is a work dir (its newest ``<timestamp>/`` run), a run dir or a ``scalars.json`` file:
mmengine's ``<work_dir>/<timestamp>/vis_data/scalars.json`` (:mod:`mmext.utils.scalars`).

``plot_curve`` takes each key from the lines that have it: from the training lines if any has
it, else from the validation lines (``time`` and ``data_time``, in both, are the training
ones).  On ``--xaxis iter`` training values sit at their iteration and validation values of an
epoch-based run at the last logged iteration of their epoch; on ``--xaxis epoch`` training
values are averaged per epoch and validation values sit at their epoch.

``cal_train_time`` averages the logged ``time`` of the training lines.  mmengine logs, at each
logged iteration, the mean over the last ``log_processor.window_size`` iterations (read from the
run's ``vis_data/config.py``, 10 when absent), so a warm-up of N iterations is excluded by
dropping every line whose window reaches back into iterations 1..N.
"""
import argparse
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')  # headless: the plot is written to a file
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mmext.utils.scalars import find_scalars_file, read_scalars, split_train_val  # noqa: E402

#: keys that place a line (x axes), not values to plot
AXIS_KEYS = ('step', 'iter', 'epoch')
#: mmengine's LogProcessor default window
DEFAULT_WINDOW = 10


class MissingKeyError(ValueError):
    """A requested key is in no line of a run."""


@dataclass
class Run:
    """One training run's ``scalars.json``, split into training and validation lines."""
    path: Path
    label: str
    train: List[Dict[str, Any]] = field(repr=False)
    val: List[Dict[str, Any]] = field(repr=False)

    @property
    def by_epoch(self) -> bool:
        """Whether the training lines carry ``epoch`` (epoch-based logging): then the
        validation lines' ``step`` is an epoch too."""
        return any('epoch' in r for r in self.train)

    def keys(self) -> List[str]:
        """Every key with a value to plot in some line, sorted."""
        found = {k for r in self.train + self.val for k, v in r.items() if _is_number(v)}
        return sorted(found - set(AXIS_KEYS))


@dataclass
class Series:
    run: Run
    key: str
    phase: str  # 'train' or 'val'
    xs: List[float]
    ys: List[float]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _run_names(paths: Sequence[Path]) -> List[str]:
    """The shortest tails of the work dir paths that tell the runs apart (``fcos/work`` and
    ``sasrec/work``), with the run's timestamp where two runs share a work dir."""

    def run_dir(path: Path) -> Path:
        return path.parent.parent if path.parent.name == 'vis_data' else path.parent

    def tail(path: Path, depth: int) -> str:
        return '/'.join(path.resolve().parts[-depth:])

    work_dirs = [run_dir(p).parent for p in paths]
    longest = max(len(w.resolve().parts) for w in work_dirs)
    for depth in range(1, longest + 1):
        names = [tail(w, depth) for w in work_dirs]
        if len(set(names)) == len(names):
            return names
    # runs of one work dir: add the run directory's name
    names = [tail(w, 1) for w in work_dirs]
    return [f'{n}/{run_dir(p).name}' for n, p in zip(names, paths)]


def load_runs(specs: Sequence[str], legend: Optional[Sequence[str]] = None) -> List[Run]:
    """A :class:`Run` per work dir, run dir or ``scalars.json`` in ``specs``."""
    paths = [find_scalars_file(Path(s)) for s in specs]
    if legend is not None and len(legend) != len(paths):
        raise ValueError(f'--legend names {len(legend)} runs but {len(paths)} runs are given')
    runs = []
    for path, label in zip(paths, legend or _run_names(paths)):
        train, val = split_train_val(read_scalars(path))
        runs.append(Run(path, label, train, val))
    return runs


def _check_keys(runs: Sequence[Run], keys: Sequence[str]) -> None:
    for run in runs:
        missing = [k for k in keys if k not in run.keys()]
        if missing:
            raise MissingKeyError(
                f"{', '.join(map(repr, missing))} in no line of {run.path}; its keys: "
                f"{', '.join(run.keys())}")


def _epoch_ends(run: Run) -> Dict[int, float]:
    """Epoch -> its last logged iteration (0 for epoch 0: a validation before training)."""
    ends: Dict[int, float] = {0: 0}
    for r in run.train:
        if _is_number(r.get('epoch')):
            ends[int(r['epoch'])] = max(ends.get(int(r['epoch']), 0), r['iter'])
    return ends


def get_series(run: Run, key: str, xaxis: str = 'iter') -> Series:
    """The points of ``key`` in ``run`` against ``xaxis`` (``'iter'`` or ``'epoch'``)."""
    if xaxis not in ('iter', 'epoch'):
        raise ValueError(f"xaxis={xaxis!r}: expected 'iter' or 'epoch'")
    if xaxis == 'epoch' and not run.by_epoch:
        raise ValueError(f'{run.path} logs no epoch (iteration-based logging): use --xaxis iter')
    train = [r for r in run.train if _is_number(r.get(key))]
    if train:
        if xaxis == 'iter':
            return Series(run, key, 'train', [r['iter'] for r in train], [r[key] for r in train])
        per_epoch = defaultdict(list)
        for r in train:
            per_epoch[r['epoch']].append(r[key])
        epochs = sorted(per_epoch)
        return Series(run, key, 'train', epochs, [statistics.fmean(per_epoch[e]) for e in epochs])
    val = [r for r in run.val if _is_number(r.get(key)) and _is_number(r.get('step'))]
    if not val:
        raise MissingKeyError(f'{key!r} in no line of {run.path}; its keys: '
                              f"{', '.join(run.keys())}")
    xs: List[float] = [r['step'] for r in val]
    if xaxis == 'iter' and run.by_epoch:
        ends = _epoch_ends(run)
        val = [r for r in val if int(r['step']) in ends]  # epochs with a logged iteration
        xs = [ends[int(r['step'])] for r in val]
    return Series(run, key, 'val', xs, [r[key] for r in val])


def collect_series(runs: Sequence[Run], keys: Sequence[str], xaxis: str = 'iter') -> List[Series]:
    """:func:`get_series` for every run and key, after checking that every key exists."""
    _check_keys(runs, keys)
    return [get_series(run, key, xaxis) for run in runs for key in keys]


def plot_curves(runs: Sequence[Run],
                keys: Sequence[str],
                out: Path,
                xaxis: str = 'iter',
                subplots: bool = False,
                title: Optional[str] = None) -> Path:
    """Plot ``keys`` of ``runs`` into the image file ``out``: all on one axes, or one axes per
    key with ``subplots``."""
    series = collect_series(runs, keys, xaxis)
    n_axes = len(keys) if subplots else 1
    fig, axes = plt.subplots(n_axes, 1, figsize=(8, 3.6 * n_axes), squeeze=False)
    for s in series:
        ax = axes[keys.index(s.key), 0] if subplots else axes[0, 0]
        if subplots or len(keys) == 1:
            label = s.run.label
        elif len(runs) == 1:
            label = s.key
        else:
            label = f'{s.run.label}: {s.key}'
        if xaxis == 'epoch' and s.phase == 'train':
            label += ' (epoch mean)'
        sparse = s.phase == 'val' or xaxis == 'epoch' or len(s.xs) == 1
        ax.plot(s.xs, s.ys, label=label, marker='o' if sparse else None, markersize=4)
    for i, ax in enumerate(axes[:, 0]):
        ax.set_xlabel('iteration' if xaxis == 'iter' else 'epoch')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(keys[i] if subplots else (keys[0] if len(keys) == 1 else 'value'))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or ', '.join(keys), fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# ----------------------------------------------------------------------------- train time
@dataclass
class TrainTime:
    """Iteration time of one run (seconds per iteration, from the logged ``time``)."""
    run: Run
    warmup: int  # iterations excluded
    window: int  # iterations each logged time averages
    num_lines: int  # training lines with a time
    num_excluded: int  # of those, dropped for the warm-up
    first_iter: int  # first and last iteration of the lines kept
    last_iter: int
    mean: float  # over the lines kept
    data_mean: Optional[float]  # their data_time, where logged
    epoch_means: Dict[int, float]  # per epoch (epoch-based logging only)

    @property
    def slowest(self) -> Optional[Tuple[int, float]]:
        return max(self.epoch_means.items(), key=lambda e: e[1]) if self.epoch_means else None

    @property
    def fastest(self) -> Optional[Tuple[int, float]]:
        return min(self.epoch_means.items(), key=lambda e: e[1]) if self.epoch_means else None

    @property
    def epoch_std(self) -> Optional[float]:
        means = list(self.epoch_means.values())
        return statistics.pstdev(means) if means else None


def log_window(scalars_file: Path) -> Tuple[int, str]:
    """``(window_size, where it came from)`` of the run's log processor: read from the config
    that mmengine saved next to ``scalars.json``, else mmengine's default."""
    config = Path(scalars_file).parent / 'config.py'
    if config.is_file():
        from mmengine.config import Config
        try:
            cfg = Config.fromfile(str(config), import_custom_modules=False)
        except Exception as e:  # a config that no longer parses: say so, use the default
            return DEFAULT_WINDOW, f'mmengine\'s default ({config} does not parse: {e})'
        window = cfg.get('log_processor', {}).get('window_size', DEFAULT_WINDOW)
        if isinstance(window, int) and window >= 1:
            return window, str(config)
    return DEFAULT_WINDOW, 'mmengine\'s default'


def train_time(run: Run, warmup: int = 5, window: Optional[int] = None) -> TrainTime:
    """Average iteration time of ``run``, the first ``warmup`` iterations excluded.

    A logged ``time`` at iteration ``i`` is the mean over iterations
    ``max(1, i - window + 1) .. i``; the line is kept if that range starts after ``warmup``.
    """
    if warmup < 0:
        raise ValueError(f'warmup={warmup}: must be >= 0')
    if window is None:
        window = log_window(run.path)[0]
    timed = [r for r in run.train if _is_number(r.get('time'))]
    if not timed:
        raise ValueError(f'{run.path}: no training line has a time (is IterTimerHook in '
                         'default_hooks?)')
    kept = [r for r in timed if max(1, r['iter'] - window + 1) > warmup]
    if not kept:
        raise ValueError(
            f'{run.path}: all {len(timed)} timed training lines (iterations {timed[0]["iter"]}-'
            f'{timed[-1]["iter"]}) average some of the first {warmup} iterations (each logged '
            f'time is the mean over the last {window}); lower --warmup')
    data = [r['data_time'] for r in kept if _is_number(r.get('data_time'))]
    per_epoch = defaultdict(list)
    for r in kept:
        if _is_number(r.get('epoch')):
            per_epoch[int(r['epoch'])].append(r['time'])
    return TrainTime(
        run=run,
        warmup=warmup,
        window=window,
        num_lines=len(timed),
        num_excluded=len(timed) - len(kept),
        first_iter=kept[0]['iter'],
        last_iter=kept[-1]['iter'],
        mean=statistics.fmean(r['time'] for r in kept),
        data_mean=statistics.fmean(data) if data else None,
        epoch_means={
            e: statistics.fmean(t)
            for e, t in sorted(per_epoch.items())
        })


def format_train_time(t: TrainTime, window_source: str = '') -> str:
    lines = [
        f'-----Analyze train time of {t.run.path}-----',
        f'warm-up: the first {t.warmup} iterations excluded: {t.num_excluded} of {t.num_lines} '
        f'logged lines dropped (each logged time averages the last {t.window} iterations'
        f"{', window from ' + window_source if window_source else ''})"
    ]
    if len(t.epoch_means) == 1:
        (epoch, _), = t.epoch_means.items()
        lines.append(f'one epoch ({epoch}) after the warm-up: no slowest/fastest epoch')
    elif t.epoch_means:
        (slow, slow_t), (fast, fast_t) = t.slowest, t.fastest
        lines += [
            f'slowest epoch {slow}, average time is {slow_t:.4f} s/iter',
            f'fastest epoch {fast}, average time is {fast_t:.4f} s/iter',
            f'time std over epochs is {t.epoch_std:.4f} s'
        ]
    data = f', of which data loading {t.data_mean:.4f} s' if t.data_mean is not None else ''
    lines.append(f'average iter time: {t.mean:.4f} s/iter{data} (lines of iterations '
                 f'{t.first_iter}-{t.last_iter})')
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Analyze mmengine training logs (scalars.json)')
    sub = parser.add_subparsers(dest='task', required=True)
    run_help = 'work dir (newest run), run dir (<work_dir>/<timestamp>) or scalars.json'

    plot = sub.add_parser('plot_curve', help='plot scalars of one or several runs')
    plot.add_argument('runs', nargs='+', help=run_help)
    plot.add_argument('--keys', nargs='+', default=['loss'], help='scalars to plot')
    plot.add_argument(
        '--xaxis', choices=['iter', 'epoch'], default='iter', help='x axis of the plot')
    plot.add_argument('--legend', nargs='+', help='one name per run (default: work dir names)')
    plot.add_argument('--subplots', action='store_true', help='one axes per key')
    plot.add_argument('--title', help='figure title (default: the keys)')
    plot.add_argument('--out', default='curve.png', help='image file to write (png, pdf, svg)')

    cal = sub.add_parser('cal_train_time', help='average iteration time of each run')
    cal.add_argument('runs', nargs='+', help=run_help)
    cal.add_argument(
        '--warmup',
        type=int,
        default=5,
        help='first iterations excluded (with every logged line that averages them)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Any:
    """Run the task; return the written path (plot_curve) or the :class:`TrainTime` list."""
    args = parse_args(argv)
    try:
        if args.task == 'plot_curve':
            runs = load_runs(args.runs, args.legend)
            out = plot_curves(runs, args.keys, Path(args.out), args.xaxis, args.subplots,
                              args.title)
            print(f'wrote {out}')
            return out
        results = []
        for run in load_runs(args.runs):
            window, source = log_window(run.path)
            result = train_time(run, args.warmup, window)
            print(format_train_time(result, source))
            results.append(result)
        return results
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'analyze_logs {args.task}: {e}') from None


if __name__ == '__main__':
    main()
