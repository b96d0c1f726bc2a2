"""Our GRU4Rec vs the official PyTorch GRU4Rec (hidasib/GRU4Rec_PyTorch_Official) on the same
MovieLens-100K sessions: quality and CPU time, several seeds, one thread each.

    git clone https://github.com/hidasib/GRU4Rec_PyTorch_Official /path/to/official  # not ours
    bash tools/benchmark/setup_gru4rec_official_env.sh       # once: its venv (numpy < 2, pandas)
    python tools/benchmark/bench_gru4rec_official.py --official-repo /path/to/official \\
        --seeds 0 1 2 3 4 [--reduction sum|mean|slot_mean]

Same data: the sessions are built once, by ``configs/gru4rec/gru4rec_ml100k.py``'s dataset (1-hour
gaps, time split, unseen test items dropped), and written as the official TAB separated files
(``SessionId ItemId Time``), so both sides train on the same 89k and test on the same 7k
predictions; the script prints the counts.  Same hyper-parameters: the official ``-ps`` string
and our config overrides are printed side by side, key by key (``ours.MAPPING``).

Same conditions: one thread per side (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``), and
the two sides alternate epoch by epoch (the official epoch k, then ours, then the official k+1,
...), so drifting load on a shared machine hits both alike.  The official code runs unchanged in a
child process of its own venv (``gru4rec_official/official_worker.py``), which only observes its
epoch boundaries; ours runs in this process through mmext's Runner, as ``tools/train.py`` runs it
(the per-iteration hooks, the dataloader and the optimizer wrapper are in our time).  Times are
per training epoch, wall and process CPU; evaluation is not timed.

Quality: Recall@K and MRR@K over every test prediction, full ranking over all items, repeats in
the session not excluded; both sides count ties against the target (the official
``mode='conservative'`` = our ``tie_policy='pessimistic'``; the default) or in its favour
(``--tie-policy optimistic`` = the official ``'standard'``, its ``run.py`` default).  With float
scores ties are rare either way.  The report gives per-side means over seeds with their standard
errors, and the ratios ours / official with the standard error of the ratio (delta method).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
from typing import List, Optional, Sequence

HERE = osp.dirname(osp.abspath(__file__))
WORKER = osp.join(HERE, 'gru4rec_official', 'official_worker.py')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--official-repo',
        required=True,
        help='a checkout of hidasib/GRU4Rec_PyTorch_Official (never copied into mmext)')
    parser.add_argument(
        '--official-python',
        help='python of the official venv (default: run setup_gru4rec_official_env.sh)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    parser.add_argument('--epochs', type=int, default=5)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--hidden', type=int, default=100)
    parser.add_argument('--dropout-embed', type=float, default=0.0)
    parser.add_argument('--dropout-hidden', type=float, default=0.2)
    parser.add_argument('--lr', type=float, default=0.05)
    parser.add_argument('--momentum', type=float, default=0.0)
    parser.add_argument('--negatives', type=int, default=512)
    parser.add_argument('--sample-alpha', type=float, default=0.5)
    parser.add_argument('--logq', type=float, default=1.0)
    parser.add_argument(
        '--reduction',
        default=None,
        choices=['sum', 'mean', 'slot_mean'],
        help="our loss reduction (default: the model's default)")
    parser.add_argument(
        '--shuffle',
        type=lambda s: s.lower() in ('1', 'true', 'yes'),
        default=True,
        help='our sessions in a new random order each epoch (the config; the official code '
        'always takes them by start time)')
    parser.add_argument('--cutoffs', type=int, nargs='+', default=[20])
    parser.add_argument(
        '--tie-policy', default='pessimistic', choices=['pessimistic', 'optimistic'])
    parser.add_argument(
        '--eval-batch',
        type=int,
        default=512,
        help="the official evaluation's parallel sessions (run.py: 512; capped at the number "
        'of test sessions)')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--json', help='also write every number here')
    args = parser.parse_args(argv)
    if not osp.isfile(osp.join(args.official_repo, 'gru4rec_pytorch.py')):
        parser.error(f'--official-repo {args.official_repo}: no gru4rec_pytorch.py there; give '
                     'a checkout of hidasib/GRU4Rec_PyTorch_Official')
    return args


class OfficialRun:
    """The official code training one seed in its venv, driven epoch by epoch."""

    def __init__(self, python: str, spec: dict) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(spec['threads']), MKL_NUM_THREADS='1')
        self.proc = subprocess.Popen([python, WORKER, json.dumps(spec)],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL,
                                     text=True,
                                     env=env)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'the official worker exited with {self.proc.wait()}; run '
                               f'{WORKER} by hand with the same spec to see why')
        reply = json.loads(line)
        if 'error' in reply:
            raise RuntimeError(f'official GRU4Rec: {reply["error"]}')
        return reply

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + '\n')
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _mean_se(xs: Sequence[float]):
    import numpy as np
    x = np.asarray(xs, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def _ratio(ours: Sequence[float], official: Sequence[float]):
    """mean(ours) / mean(official) and its standard error (delta method, independent sides)."""
    (a, sa), (b, sb) = _mean_se(ours), _mean_se(official)
    r = a / b
    return r, abs(r) * ((sa / a)**2 + (sb / b)**2)**0.5


def report(runs: List[dict], cutoffs: Sequence[int]) -> str:
    keys = [f'{m}@{k}' for k in cutoffs for m in ('recall', 'mrr')]
    rows = ['| | official | mmext | ratio mmext / official |', '|---|---|---|---|']
    for key in keys:
        off = [r['official'][key] for r in runs]
        ours = [r['ours'][key] for r in runs]
        (mo, so), (mm, sm) = _mean_se(off), _mean_se(ours)
        r, sr = _ratio(ours, off)
        rows.append(f'| {key} | {mo:.4f} ± {so:.4f} | {mm:.4f} ± {sm:.4f} | {r:.3f} ± {sr:.3f} |')
    for what in ('cpu', 'wall'):
        # per seed: the median epoch (the first one carries one-off costs on both sides)
        off = [r['official_epoch'][what] for r in runs]
        ours = [r['ours_epoch'][what] for r in runs]
        (mo, so), (mm, sm) = _mean_se(off), _mean_se(ours)
        r, sr = _ratio(ours, off)
        rows.append(f'| {what} s / epoch (median epoch) | {mo:.2f} ± {so:.2f} | '
                    f'{mm:.2f} ± {sm:.2f} | **{r:.3f} ± {sr:.3f}** |')
    steps = runs[0]['steps']
    rows.append(f'| steps / epoch | {steps["official"]} | {steps["ours"]} | |')
    return '\n'.join(rows) + f'\n(mean ± standard error over {len(runs)} seeds)'


def _median(samples: List[dict], key: str) -> float:
    import statistics
    return statistics.median(s[key] for s in samples)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    # one thread per side, before torch loads (OpenMP reads the variables once)
    os.environ['OMP_NUM_THREADS'] = str(args.threads)
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # as tools/train.py
    sys.path.insert(0, HERE)
    import torch
    torch.set_num_threads(args.threads)

    from gru4rec_official.ours import MAPPING, official_params, train_ours, write_official_split

    import mmext  # noqa: F401
    if args.reduction is None:
        import inspect

        from mmext.models.recommenders import GRU4Rec
        args.reduction = inspect.signature(GRU4Rec).parameters['reduction'].default
    python = args.official_python or subprocess.run(
        ['bash', osp.join(HERE, 'setup_gru4rec_official_env.sh')],
        check=True,
        capture_output=True,
        text=True).stdout.strip().splitlines()[-1]
    params = official_params(args)
    print('== hyper-parameters, official -ps key -> mmext config key (value)')
    for off, ours, how in MAPPING:
        print(f'   {off:32s} -> {ours:42s} {how}')
    print(f'   official: {params}')
    print(f'   mmext: reduction={args.reduction!r}, shuffle={args.shuffle}, '
          f'tie_policy={args.tie_policy!r}')
    runs: List[dict] = []
    with tempfile.TemporaryDirectory(prefix='bench_gru4rec_official_') as work:
        split = write_official_split(args, work)
        print(
            f'== data: {split["train_sessions"]} training sessions, '
            f'{split["train_predictions"]} training predictions; {split["test_sessions"]} '
            f'test sessions, {split["test_predictions"]} test predictions; '
            f'{split["num_items"]} items',
            flush=True)
        mode = 'conservative' if args.tie_policy == 'pessimistic' else 'standard'
        for seed in args.seeds:
            spec = dict(
                repo=osp.abspath(args.official_repo),
                train=split['train'],
                test=split['test'],
                params=params,
                seed=seed,
                threads=args.threads,
                eval_batch=args.eval_batch,
                eval_mode=mode,
                cutoffs=args.cutoffs)
            official = OfficialRun(python, spec)
            if official.info['train_events'] != split['train_events']:
                raise RuntimeError(f'the official side read {official.info["train_events"]} '
                                   f'training events, we wrote {split["train_events"]}')
            off_epochs: List[dict] = []
            ours = train_ours(args, work, seed,
                              lambda epoch: off_epochs.append(official.ask('train')))
            res = official.ask('eval')
            official.close()
            off_metrics = {
                f'{m}@{k}': res[m][str(k)]
                for m in ('recall', 'mrr')
                for k in args.cutoffs
            }
            run = dict(
                seed=seed,
                official=off_metrics,
                ours={k: ours['metrics'][k]
                      for k in off_metrics},
                official_epochs=off_epochs,
                ours_epochs=ours['epochs'],
                official_epoch={k: _median(off_epochs, k)
                                for k in ('wall', 'cpu')},
                ours_epoch={k: _median(ours['epochs'], k)
                            for k in ('wall', 'cpu')},
                steps=dict(official=off_epochs[0]['steps'], ours=ours['epochs'][0]['steps']))
            runs.append(run)
            print(
                f'   seed {seed}: official {run["official"]} {run["official_epoch"]["cpu"]:.2f} '
                f'CPU s/epoch; mmext {run["ours"]} {run["ours_epoch"]["cpu"]:.2f} CPU s/epoch',
                flush=True)
    print(report(runs, args.cutoffs))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), data=split, runs=runs), f, indent=1)


if __name__ == '__main__':
    main()
