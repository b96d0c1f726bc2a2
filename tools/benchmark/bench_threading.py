"""What the entry points' OpenMP default costs when the machine is idle and saves when it is not.

Runs ``tools/train.py`` on a config for a few iterations in a fresh process per variant, each
variant once alone and once beside a busy single-threaded process (``--load`` of them), and
reports the median per-iteration time (mmengine's ``time`` column, logged every iteration, after
``--warmup`` iterations), the wall time and the child's CPU time:

* ``default``: mmext's entry-point default, ``OMP_WAIT_POLICY=PASSIVE`` (tools/process_defaults.py)
  with torch's thread count;
* ``libgomp``: torch's own behaviour, ``OMP_WAIT_POLICY=`` (empty: libgomp's default spin-then-
  sleep, what any script that imports torch gets);
* ``active``: ``OMP_WAIT_POLICY=ACTIVE`` (spin forever);
* ``1-thread``: ``OMP_NUM_THREADS=1``;
* ``spin-10k``/``spin-30k``: libgomp's spin-then-sleep with a shorter spin (``GOMP_SPINCOUNT``).

    python tools/benchmark/bench_threading.py --preset fcos      # FCOS shapes demo, 12 iters
    python tools/benchmark/bench_threading.py --preset sasrec    # SASRec ml-100k, 3 epochs
"""
import argparse
import multiprocessing as mp
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from mmext.utils.progress import stage

ROOT = Path(__file__).resolve().parents[2]

PRESETS = dict(
    fcos=dict(
        config='configs/fcos/fcos_r18_fpn_shapes-128_demo.py',
        options=[
            'train_cfg.max_epochs=1', 'train_cfg.val_interval=100',
            'train_dataloader.dataset.indices=192', 'default_hooks.logger.interval=1',
            'default_hooks.checkpoint.interval=100', 'default_hooks.checkpoint.save_last=False'
        ]),
    sasrec=dict(
        config='configs/sasrec/sasrec_ml100k.py',
        options=[
            'train_cfg.max_epochs=3', 'train_cfg.val_interval=100',
            'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=100'
        ]),
    tiny=dict(
        config='configs/sasrec/sasrec_ml100k.py',
        options=[
            'train_cfg.max_epochs=1', 'train_cfg.val_interval=100',
            'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=100',
            'train_dataloader.batch_size=512'
        ]),
)

VARIANTS: Dict[str, Dict[str, str]] = {
    'default': {},
    'libgomp': {
        'OMP_WAIT_POLICY': ''
    },
    'active': {
        'OMP_WAIT_POLICY': 'ACTIVE'
    },
    '1-thread': {
        'OMP_NUM_THREADS': '1'
    },
    # libgomp spins GOMP_SPINCOUNT times before it sleeps (300000 when the policy is unset)
    'spin-10k': {
        'OMP_WAIT_POLICY': '',
        'GOMP_SPINCOUNT': '10000'
    },
    'spin-30k': {
        'OMP_WAIT_POLICY': '',
        'GOMP_SPINCOUNT': '30000'
    },
}

_ITER_TIME = re.compile(r'Epoch\(train\)\s+\[\d+\]\[\s*\d+/\d+\].*?\btime: ([0-9.]+)')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--preset', choices=sorted(PRESETS), default='fcos')
    p.add_argument('--variants', nargs='+', choices=sorted(VARIANTS), default=list(VARIANTS))
    p.add_argument('--load', type=int, default=1, help='busy processes in the loaded runs')
    p.add_argument('--no-idle', action='store_true', help='only the loaded runs')
    p.add_argument('--warmup', type=int, default=3, help='iterations left out of the median')
    p.add_argument('--timeout', type=float, default=900, help='seconds per run')
    return p.parse_args(argv)


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def run_once(preset: str, env_overrides: Dict[str, str], timeout: float) -> Dict[str, float]:
    cfg = PRESETS[preset]
    env = dict(os.environ)
    for key in ('OMP_WAIT_POLICY', 'OMP_NUM_THREADS', 'GOMP_SPINCOUNT'):
        env.pop(key, None)
    env.update(env_overrides)
    with tempfile.TemporaryDirectory() as work_dir:
        cmd = [
            sys.executable,
            str(ROOT / 'tools' / 'train.py'), cfg['config'], '--work-dir', work_dir,
            '--cfg-options', *cfg['options']
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f'{cmd} failed:\n{proc.stderr[-3000:]}')
    times = [float(t) for t in _ITER_TIME.findall(proc.stdout + proc.stderr)]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(iter_times=times, wall=wall, cpu=cpu)


def measure(args: argparse.Namespace) -> List[Dict]:
    rows = []
    loads = ([] if args.no_idle else [0]) + ([args.load] if args.load else [])
    for load in loads:
        stop = mp.Event()
        spinners = [mp.Process(target=_spin, args=(stop, ), daemon=True) for _ in range(load)]
        for s in spinners:
            s.start()
        try:
            for name in args.variants:
                # a run takes a minute or more, its log is captured: say what is running
                with stage(f'{args.preset} load={load} {name}: training run'):
                    result = run_once(args.preset, VARIANTS[name], args.timeout)
                steady = result['iter_times'][args.warmup:] or result['iter_times']
                rows.append(
                    dict(
                        variant=name,
                        load=load,
                        median=statistics.median(steady) if steady else float('nan'),
                        iters=len(result['iter_times']),
                        wall=result['wall'],
                        cpu=result['cpu']))
                r = rows[-1]
                print(
                    f"{args.preset:7s} load={load} {name:9s} median {r['median']:.3f} s/iter "
                    f"({r['iters']} iters)  wall {r['wall']:.1f} s  cpu {r['cpu']:.1f} s",
                    flush=True)
        finally:
            stop.set()
            for s in spinners:
                s.join()
    return rows


def report(rows: List[Dict]) -> None:
    base = {r['load']: r for r in rows if r['variant'] == 'default'}
    print('\nvariant    load  s/iter (median)  vs default  wall s  cpu s')
    for r in rows:
        ref = base.get(r['load'])
        ratio = r['median'] / ref['median'] if ref and ref['median'] else float('nan')
        print(f"{r['variant']:9s}  {r['load']:4d}  {r['median']:15.3f}  {ratio:9.2f}x  "
              f"{r['wall']:6.1f}  {r['cpu']:5.1f}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    report(measure(args))


if __name__ == '__main__':
    main()
