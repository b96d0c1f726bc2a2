"""Our SASRec vs pmixer/SASRec.pytorch (the PyTorch port of the paper's official code), same data.

    bash tools/benchmark/setup_sasrec_official_env.sh            # once: the official venv
    git clone https://github.com/pmixer/SASRec.pytorch /tmp/SASRec.pytorch   # never committed
    python tools/benchmark/bench_sasrec_official.py --official-repo /tmp/SASRec.pytorch \
        --seeds 0 1 2 --epochs 20

Data: ``python/data/Video.txt`` of the checkout by default (``--data``; 31,013 users, 23,715
items, 287,107 interactions: the size class of the SASRec paper's sets).  It is read once here;
the official side reads it back in its own format and ours as an atomic ``.inter`` file with the
same per-user order (:mod:`sasrec_official_bench.data`).  Both sides report users, items and
training targets, which the script checks against its own count of each split.

Hyper-parameters: the official code's recipe for sets of this size (``--max-len 50
--dropout 0.5``, d = 50, 2 blocks, 1 head, batch 128, lr 1e-3); ours is
``configs/sasrec/sasrec_video.py`` with the same values.  The script prints the mapping key by
key before training.

Each seed trains both sides, one after the other (the order alternates from seed to seed), each
in a child process with ``--threads`` torch threads (``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` too): the official code in its venv, imported from the checkout and driven
the way its ``main.py`` does (:mod:`sasrec_official_bench.official_side`); ours through
mmext's Runner (:mod:`sasrec_official_bench.ours_side`).  CPU seconds per epoch include every
process of a side (the official sampler's 3 workers).

Quality: both models score the same tasks (:mod:`sasrec_official_bench.protocol`): every user
with >= 4 interactions (both sides evaluate them), test NDCG@10 and HR@10 with full ranking over
all items (history not excluded, ties averaged as :class:`mmext.RankingMetric` does) and,
for reference, against the same 100 sampled negatives per user (the paper's protocol).
``--own-eval`` adds the official ``evaluate`` (100 random negatives, 10,000 random users) on the
official side, and our ``runner.test()`` (every user with >= 3 interactions) is reported for
ours.  Ratios are means over seeds of the per-seed ratio with their standard errors; each seed
also shows the per-user paired difference of test NDCG@10 with its standard error.
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

from sasrec_official_bench.data import (eval_tasks, read_user_item_file, split_counts,
                                        write_atomic_inter, write_user_item_file)
from sasrec_official_bench.report import mapping_rows, mapping_table, summary_tables

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
OFFICIAL_WORKER, OURS_WORKER = '--official-worker', '--ours-worker'
DATA_NAME = 'bench'  # the official side reads data/bench.txt


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--official-repo',
        help='a checkout of github.com/pmixer/SASRec.pytorch (python/model.py, utils.py)')
    parser.add_argument(
        '--data',
        default=None,
        help="'user item' lines, per-user time order (default: python/data/Video.txt of the "
        'checkout)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=20)
    parser.add_argument('--threads', type=int, default=1, help='torch threads on each side')
    parser.add_argument('--max-len', type=int, default=50)
    parser.add_argument('--dropout', type=float, default=0.5)
    parser.add_argument('--hidden', type=int, default=50)
    parser.add_argument('--blocks', type=int, default=2)
    parser.add_argument('--heads', type=int, default=1)
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument(
        '--official-norm-first',
        action='store_true',
        help="the official code's --norm_first (pre-LN blocks; default: its post-LN)")
    parser.add_argument(
        '--ours-model',
        type=json.loads,
        default=None,
        metavar='JSON',
        help='override arguments of our SASRec, e.g. \'{"norm": "query_only"}\'')
    parser.add_argument(
        '--ours-config', default=osp.join(ROOT, 'configs', 'sasrec', 'sasrec_video.py'))
    parser.add_argument(
        '--sides',
        nargs='+',
        default=['official', 'ours'],
        choices=['official', 'ours'],
        help='run only one side (profiling; no ratios)')
    parser.add_argument('--max-users', type=int, default=None, help='first N users (smoke runs)')
    parser.add_argument(
        '--own-eval',
        action='store_true',
        help="also the official evaluate() (sampled, <= 10,000 random users) on its side")
    parser.add_argument(
        '--no-runner-test', action='store_true', help='skip our runner.test() after training')
    parser.add_argument('--eval-seed', type=int, default=0, help='seed of the sampled negatives')
    parser.add_argument(
        '--official-python',
        default=None,
        help='python of the official venv (default: set it up / reuse it with '
        'tools/benchmark/setup_sasrec_official_env.sh)')
    parser.add_argument(
        '--reuse-official',
        metavar='JSON',
        default=None,
        help="replay the official side (results and times) from an earlier --json of this "
        'script with the same official settings and seeds, instead of training it again')
    parser.add_argument(
        '--profile-steps',
        type=int,
        default=0,
        metavar='N',
        help='only profile N of our training steps (data vs train_step, torch operators) '
        'and exit')
    parser.add_argument('--json', help='also write every result here')
    parser.add_argument(
        '--merge',
        nargs='+',
        metavar='JSON',
        help='print the tables of earlier --json files together (e.g. one seed per run) '
        'and exit')
    args = parser.parse_args(argv)
    if args.merge:
        return args
    if not args.official_repo:
        parser.error('--official-repo is required (unless --merge)')
    if args.ours_model is not None and not isinstance(args.ours_model, dict):
        parser.error(f'--ours-model must be a JSON object, got {args.ours_model!r}')
    if not osp.isfile(osp.join(args.official_repo, 'python', 'model.py')):
        parser.error(f'--official-repo {args.official_repo}: no python/model.py there')
    if args.data is None:
        args.data = osp.join(args.official_repo, 'python', 'data', 'Video.txt')
    return args


def official_args(args: argparse.Namespace) -> dict:
    """The official ``main.py``'s arguments that its model and sampler read."""
    return dict(
        batch_size=args.batch_size,
        lr=args.lr,
        maxlen=args.max_len,
        hidden_units=args.hidden,
        num_blocks=args.blocks,
        num_heads=args.heads,
        dropout_rate=args.dropout,
        l2_emb=0.0,
        norm_first=args.official_norm_first)


def ours_model_args(args: argparse.Namespace) -> dict:
    """Overrides of the config's model: the command line's values, then ``--ours-model``."""
    return dict(
        max_len=args.max_len,
        embed_dims=args.hidden,
        ffn_dims=args.hidden,
        num_blocks=args.blocks,
        num_heads=args.heads,
        dropout=args.dropout,
        **(args.ours_model or {}))


def _run_worker(python: str, flag: str, spec: dict, work: str, threads: int) -> dict:
    path = osp.join(work, f"spec_{spec['side']}_{spec['seed']}.json")
    spec['out'] = osp.join(work, f"out_{spec['side']}_{spec['seed']}.json")
    with open(path, 'w') as f:
        json.dump(spec, f)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if flag == OURS_WORKER:  # this checkout's mmext
        env['PYTHONPATH'] = os.pathsep.join([ROOT] + [env['PYTHONPATH']] * ('PYTHONPATH' in env))
    start = time.perf_counter()
    subprocess.run([python, osp.abspath(__file__), flag, path], check=True, env=env, cwd=work)
    with open(spec['out']) as f:
        result = json.load(f)
    result['process_wall'] = time.perf_counter() - start
    return result


# what the official side's results depend on (a replayed side must match)
OFFICIAL_SETTINGS = ('data', 'epochs', 'threads', 'max_len', 'dropout', 'hidden', 'blocks', 'heads',
                     'batch_size', 'lr', 'official_norm_first', 'max_users', 'eval_seed')


def recorded_official(path: str, args: argparse.Namespace) -> dict:
    """``{seed: official result}`` of an earlier ``--json`` whose official settings are this
    run's."""
    with open(path) as f:
        saved = json.load(f)
    differ = {
        k: (saved['args'].get(k), getattr(args, k))
        for k in OFFICIAL_SETTINGS if saved['args'].get(k) != getattr(args, k)
    }
    if differ:
        raise SystemExit(f'--reuse-official {path}: other official settings (saved, now): {differ}')
    found = {run['seed']: run['official'] for run in saved['runs'] if 'official' in run}
    missing = set(args.seeds) - set(found)
    if missing:
        raise SystemExit(f'--reuse-official {path}: no official run for seed(s) {sorted(missing)}')
    return found


def merge(paths: Sequence[str]) -> None:
    """The tables of several ``--json`` files (runs of one seed each, say), checked to be runs of
    the same settings."""
    runs, settings = [], None
    ignore = {'seeds', 'json', 'merge', 'official_python', 'sides', 'reuse_official'}
    for path in paths:
        with open(path) as f:
            saved = json.load(f)
        these = {k: v for k, v in saved['args'].items() if k not in ignore}
        if settings is not None and these != settings:
            raise SystemExit(f'{path}: other settings than {paths[0]}: {these} != {settings}')
        settings = these
        runs += saved['runs']
        for run in saved['runs']:
            print(f"{path}: seed {run['seed']}, {saved.get('machine', {})}, load after "
                  f"{run.get('load_after')}")
    print(summary_tables(runs))
    print_extras(runs, ('official', 'ours'))


def print_extras(runs: list, sides: Sequence[str]) -> None:
    """Each side's own evaluation, where it was run: the official ``evaluate()`` and our
    ``runner.test()``."""
    for run in runs:
        for side in sides:
            extra = run[side].get('own_eval') or run[side].get('runner_test')
            if extra:
                what = 'official evaluate()' if side == 'official' else 'runner.test()'
                print(f"seed {run['seed']} {side}: {what}: {json.dumps(extra)}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.merge:
        merge(args.merge)
        return
    import numpy as np
    from mmengine.config import Config

    users, sequences = read_user_item_file(args.data)
    if args.max_users:
        users, sequences = users[:args.max_users], sequences[:args.max_users]
        # ids 1..n again: the official code takes the largest id as the number of items
        _, dense = np.unique(np.concatenate(sequences), return_inverse=True)
        sequences = np.split(dense + 1, np.cumsum([len(s) for s in sequences])[:-1])
    counts = split_counts(sequences, args.max_len)
    machine = dict(
        date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        host=platform.node(),
        cpus=os.cpu_count(),
        load_at_start=os.getloadavg())
    print(f'machine: {json.dumps(machine)}', flush=True)
    print(f'data {args.data}: {json.dumps(counts)}', flush=True)
    cfg = Config.fromfile(args.ours_config)
    ours_model = dict(cfg.model, **ours_model_args(args))
    ours_cfg = dict(
        lr=cfg.optim_wrapper.optimizer.lr,
        optimizer=dict(cfg.optim_wrapper.optimizer),
        batch_size=cfg.train_dataloader.batch_size,
        num_workers=cfg.train_dataloader.num_workers,
        train_windows=cfg.train_dataloader.dataset.train_windows,
        num_train_negatives=cfg.train_dataloader.dataset.num_train_negatives)
    if ours_cfg['batch_size'] != args.batch_size or ours_cfg['lr'] != args.lr:
        raise SystemExit(f'{args.ours_config}: batch size {ours_cfg["batch_size"]} and lr '
                         f'{ours_cfg["lr"]} differ from --batch-size / --lr')
    print('hyper-parameters, key by key:')
    print(mapping_table(mapping_rows(official_args(args), ours_model, ours_cfg)), flush=True)
    python = {'ours': sys.executable}
    # torch comes from the venv running this script
    setup_env = dict(os.environ, MMEXT_VENV=os.environ.get('MMEXT_VENV', sys.prefix))
    replay = recorded_official(args.reuse_official, args) if args.reuse_official else {}
    if 'official' in args.sides and not replay:
        python['official'] = args.official_python or subprocess.run(
            ['bash', osp.join(HERE, 'setup_sasrec_official_env.sh')],
            check=True,
            capture_output=True,
            text=True,
            env=setup_env).stdout.strip().splitlines()[-1]
    if args.profile_steps:
        from sasrec_official_bench.profile_ours import profile_ours
        with tempfile.TemporaryDirectory(prefix='bench_sasrec_official_') as work:
            inter = write_atomic_inter(osp.join(work, 'bench.inter'), users, sequences)
            profile_ours(args.ours_config, inter, ours_model_args(args), args.profile_steps,
                         args.seeds[0])
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix='bench_sasrec_official_') as work:
        write_user_item_file(osp.join(work, 'data', f'{DATA_NAME}.txt'), users, sequences)
        inter = write_atomic_inter(osp.join(work, 'ours', 'bench.inter'), users, sequences)
        tasks = eval_tasks(sequences, args.max_len, counts['items'], args.eval_seed)
        np.savez(osp.join(work, 'tasks.npz'), **tasks)
        print(
            f"common evaluation: {len(tasks['user_index'])} users (>= 4 interactions), "
            f"{counts['items']} items",
            flush=True)
        for i, seed in enumerate(args.seeds):
            order = args.sides if i % 2 == 0 else args.sides[::-1]
            run = dict(seed=seed)
            for side in order:
                spec = dict(
                    side=side,
                    seed=seed,
                    epochs=args.epochs,
                    threads=args.threads,
                    tasks=osp.join(work, 'tasks.npz'))
                print(f'== seed {seed}: {side}', flush=True)
                if side == 'official' and replay:
                    result = dict(replay[seed], replayed_from=args.reuse_official)
                    expect = dict(
                        users=counts['users'],
                        items=counts['items'],
                        evaluated=counts['evaluated_official'],
                        train_targets=counts['train_targets_official'])
                elif side == 'official':
                    spec.update(
                        checkout=osp.abspath(args.official_repo),
                        data_root=work,
                        name=DATA_NAME,
                        args=official_args(args),
                        own_eval=args.own_eval)
                    result = _run_worker(python[side], OFFICIAL_WORKER, spec, work, args.threads)
                    expect = dict(
                        users=counts['users'],
                        items=counts['items'],
                        evaluated=counts['evaluated_official'],
                        train_targets=counts['train_targets_official'])
                else:
                    spec.update(
                        config=osp.abspath(args.ours_config),
                        ann_file=inter,
                        model=ours_model_args(args),
                        work_dir=osp.join(work, f'ours_{seed}'),
                        runner_test=not args.no_runner_test)
                    result = _run_worker(python[side], OURS_WORKER, spec, work, args.threads)
                    expect = dict(
                        users=counts['users'],
                        items=counts['items'],
                        train_targets=counts['train_targets_ours'])
                got = {k: result['info'][k] for k in expect}
                if got != expect:
                    raise AssertionError(f'{side} reads other data than this script: {got} != '
                                         f'{expect}')
                print(f"   {side}: {json.dumps(result['info'])}", flush=True)
                run[side] = result
            run['load_after'] = os.getloadavg()
            runs.append(run)
            if len(args.sides) == 2:
                print(summary_tables(runs), flush=True)
    print_extras(runs, args.sides)
    if len(args.sides) == 1:
        from sasrec_official_bench.report import seed_metrics
        for run in runs:
            print(f"seed {run['seed']} {args.sides[0]}: "
                  f'{json.dumps(seed_metrics(run[args.sides[0]]))}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), counts=counts, machine=machine, runs=runs), f)


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] in (OFFICIAL_WORKER, OURS_WORKER):
        with open(sys.argv[2]) as spec_file:
            worker_spec = json.load(spec_file)
        if sys.argv[1] == OFFICIAL_WORKER:
            from sasrec_official_bench.official_side import official_worker
            official_worker(worker_spec)
        else:
            from sasrec_official_bench.ours_side import ours_worker
            ours_worker(worker_spec)
    else:
        main()
