"""Process-wide defaults of mmext's entry points, applied before torch or mmengine is imported.

``tools/train.py`` and ``tools/test.py`` (and so the dist/slurm scripts and the make targets that
call them) import this module first.

Threading.  torch's OpenMP threads wait for work by spinning.  On a machine where anything else
runs, the spinning threads compete with that work and with each other: the FCOS demo took
5.4-6.9 s per iteration with one other busy process on 2 cores, against 0.40-0.44 s with
``OMP_WAIT_POLICY=PASSIVE`` (issue #21).  The price is paid on an idle machine: sleeping threads
must be woken for every parallel region, and the same runs are 1.35-1.5x slower per iteration
than with libgomp's spin-then-sleep; with one busy process beside them, spinning makes them
2.1-2.6x slower than ``PASSIVE`` (docs/benchmarks.md, "Threading defaults").  libgomp reads
the variable once, when torch loads it, hence the import order.  A value the user sets wins
(``OMP_WAIT_POLICY=ACTIVE python tools/train.py ...`` restores the spinning);
``OMP_NUM_THREADS`` is left to the user and to torchrun, which sets it to 1 per process.

Warnings.  Three start-up notices that are not ours and that a user can do nothing about are
filtered here, once, by message: pkg_resources' deprecation (mmengine and mmcv import it; our
set-up pins ``setuptools<81`` on purpose so that they still can), and torch's ``meshgrid``
indexing notice raised from mmdet's prior generators.  (mmengine's "FileClient will be
deprecated" log lines are filtered by ``mmext.Runner``'s logger.)
"""
import os
import warnings
from typing import Dict, MutableMapping

ENV_DEFAULTS: Dict[str, str] = {'OMP_WAIT_POLICY': 'PASSIVE'}

#: (message regex, category): notices of third-party code, harmless here
FOREIGN_WARNINGS = (
    (r'pkg_resources is deprecated as an API', UserWarning),
    (r'torch\.meshgrid: in an upcoming release, it will be required to pass the indexing',
     UserWarning),
)


def apply_env(environ: MutableMapping[str, str] = os.environ) -> Dict[str, str]:
    """Set every default the environment does not already set; return what was set."""
    applied = {k: v for k, v in ENV_DEFAULTS.items() if k not in environ}
    environ.update(applied)
    return applied


def filter_foreign_warnings() -> None:
    for message, category in FOREIGN_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category)


apply_env()
filter_foreign_warnings()
