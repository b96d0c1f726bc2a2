"""mmengine's scalar log of a training run: ``<work_dir>/<timestamp>/vis_data/scalars.json``.

mmengine's ``LoggerHook`` writes it through the ``LocalVisBackend``, one JSON object per line:

* a *training line* every ``default_hooks.logger.interval`` iterations: ``lr``, the loss terms,
  ``time`` and ``data_time`` (each the mean over the log processor's last ``window_size``
  iterations, 10 by default), ``iter`` (the global iteration, from 1), ``epoch`` (only when
  ``log_processor.by_epoch``), ``memory`` (CUDA only) and ``step`` (= ``iter``);
* a *validation line* after each validation: the metrics (``coco/bbox_mAP``, ``hr@10``, ...),
  ``time`` / ``data_time`` (means over the validation epoch) and ``step``: the epoch
  (``logger.log_metric_by_epoch``, mmengine's default) or the iteration.

Validation lines never carry ``iter``: that is how the two are told apart.  Keys may be missing
from some lines of either kind (a loss term that appears later, ``grad_norm`` only with gradient
clipping), so readers take each key from the lines that have it.
"""
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

__all__ = ['find_scalars_file', 'read_scalars', 'split_train_val', 'load_scalars']

#: mmengine's run directory names, ``YYYYmmdd_HHMMSS``
RUN_DIR_NAME = re.compile(r'^\d{8}_\d{6}$')

Record = Dict[str, Any]


def find_scalars_file(path: Union[str, Path]) -> Path:
    """The ``scalars.json`` that ``path`` stands for.

    ``path`` may be the file itself, a run directory (``<work_dir>/<timestamp>``) or a work
    dir; in a work dir the newest run with a ``vis_data/scalars.json`` wins: runs are ordered by
    their timestamp name, directories not named like a timestamp rank below timestamped ones, by
    modification time.
    """
    path = Path(path)
    if path.is_file():
        return path
    direct = path / 'vis_data' / 'scalars.json'
    if direct.is_file():
        return direct
    if not path.is_dir():
        raise FileNotFoundError(f'{path} does not exist')
    runs = [d for d in path.iterdir() if (d / 'vis_data' / 'scalars.json').is_file()]
    if not runs:
        raise FileNotFoundError(
            f'no <timestamp>/vis_data/scalars.json under {path}; was this the work_dir '
            'of a training run with the LocalVisBackend?')

    def rank(run: Path) -> Tuple[bool, str, float]:
        stamped = bool(RUN_DIR_NAME.match(run.name))
        return stamped, run.name if stamped else '', run.stat().st_mtime

    return max(runs, key=rank) / 'vis_data' / 'scalars.json'


def read_scalars(path: Union[str, Path]) -> List[Record]:
    """Every line of a ``scalars.json`` (JSON lines), in order; blank lines skipped."""
    records = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise ValueError(f'{path}:{lineno} is not a JSON line: {e}') from None
            if not isinstance(record, dict):
                raise ValueError(f'{path}:{lineno} is not a JSON object')
            records.append(record)
    return records


def split_train_val(records: List[Record]) -> Tuple[List[Record], List[Record]]:
    """``(training lines, validation lines)``: training lines carry ``iter``, validation lines
    do not (see the module docstring)."""
    train = [r for r in records if 'iter' in r]
    val = [r for r in records if 'iter' not in r]
    return train, val


def load_scalars(path: Union[str, Path]) -> Tuple[List[Record], List[Record]]:
    """:func:`read_scalars` then :func:`split_train_val`."""
    return split_train_val(read_scalars(path))
