"""Readers for interaction files: RecBole atomic files and GRU4Rec-style session files.

Both readers return plain columns (``dict[str, numpy.ndarray]``) and check every line: a line
with the wrong number of fields, an empty value or a number that does not parse raises
:class:`ValueError` naming ``file:line`` and the problem, instead of a silent NaN.

* :func:`read_atomic_inter` reads RecBole's atomic files (Zhao et al., "RecBole", CIKM 2021,
  "atomic files" section of its docs): tab-separated, one header line of ``name:type`` fields,
  types ``token``, ``float``, ``token_seq`` and ``float_seq`` (sequences space-separated).
* :func:`read_session_file` reads the click files of the official GRU4Rec code (Hidasi et al.,
  ICLR 2016): a header naming ``SessionId``, ``ItemId`` and ``Time`` columns, tab- or
  comma-separated; ``Time`` may be a number (unix seconds) or an ISO-8601 date-time (as in the
  raw RecSys Challenge 2015 ``yoochoose-clicks.dat``).
* :func:`ml100k_path` finds MovieLens-100K inside the installed ``recbole`` wheel (never imported,
  never redistributed by us).
"""
import datetime
import importlib.util
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmext.utils.progress import Progress, stage, track

__all__ = ['ATOMIC_TYPES', 'read_atomic_inter', 'read_session_file', 'ml100k_path']

#: Field types of RecBole atomic files that the reader understands.
ATOMIC_TYPES = ('token', 'float', 'token_seq', 'float_seq')

_RECBOLE_HINT = ('install the recbole wheel without its dependencies, which only brings the data '
                 'file: pip install --no-deps recbole==1.2.1')

# lines between two progress updates: reading a line costs microseconds, a large log (the 33
# million clicks of RSC15) takes minutes
_PROGRESS_LINES = 4096


def _file_progress(path: str) -> Progress:
    """Progress of reading ``path``, in bytes (read from the file's byte position)."""
    return Progress(osp.getsize(path), f'reading {osp.basename(path)}', unit='B')


def _error(path: str, line_no: int, problem: str) -> ValueError:
    return ValueError(f'{path}:{line_no}: {problem}')


def _parse_header(path: str, header: str) -> List[tuple]:
    fields = []
    for pos, spec in enumerate(header.rstrip('\r\n').split('\t')):
        name, sep, ftype = spec.strip().partition(':')
        if not sep or not name:
            raise _error(
                path, 1, f'header field {pos + 1} {spec!r} is not of the form '
                f'name:type (types: {", ".join(ATOMIC_TYPES)})')
        if ftype not in ATOMIC_TYPES:
            raise _error(
                path, 1, f'header field {spec!r} has unknown type {ftype!r} '
                f'(known: {", ".join(ATOMIC_TYPES)})')
        if name in (f[0] for f in fields):
            raise _error(path, 1, f'header names field {name!r} twice')
        fields.append((name, ftype))
    return fields


def _to_float(path: str, line_no: int, name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _error(path, line_no, f'field {name!r}: {text!r} is not a number') from None
    if value != value:  # NaN written out in the file is a missing value too
        raise _error(path, line_no, f'field {name!r} is NaN')
    return value


def read_atomic_inter(path: str, fields: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    """Read a RecBole atomic file (``.inter``, ``.item``, ``.user``).

    Args:
        path: the file.
        fields: bare names of the columns to return (default: all); a name the header lacks
            raises :class:`KeyError` listing the header's names.

    Returns:
        Columns keyed by bare name (``user_id``, ``item_id``, ``rating``, ``timestamp``...):
        ``token`` → ``str`` array, ``float`` → ``float64`` array, ``token_seq`` → object array of
        ``tuple[str, ...]``, ``float_seq`` → object array of ``float64`` arrays.  Blank lines are
        skipped; every other line must have one value per header field, none of them empty
        (RecBole would read an empty value as NaN).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'no interaction file at {path!r}')
    with open(path, encoding='utf-8') as f, _file_progress(path) as progress:
        header = f.readline()
        if not header.strip():
            raise _error(path, 1, 'empty header: expected tab-separated name:type fields')
        spec = _parse_header(path, header)
        names = [n for n, _ in spec]
        wanted = list(names) if fields is None else list(fields)
        missing = [n for n in wanted if n not in names]
        if missing:
            raise KeyError(f'{path}: no field(s) {missing} in the header; it has {names}')
        cols = [(names.index(n), n, dict(spec)[n]) for n in wanted]
        values: Dict[str, list] = {n: [] for n in wanted}
        n_fields = len(spec)
        for line_no, line in enumerate(f, start=2):
            if not line_no % _PROGRESS_LINES:
                progress.update_to(f.buffer.tell())
            line = line.rstrip('\r\n')
            if not line.strip():
                continue
            parts = line.split('\t')
            if len(parts) != n_fields:
                raise _error(
                    path, line_no, f'{len(parts)} tab-separated values, the header '
                    f'has {n_fields} fields ({", ".join(names)})')
            for idx, name, ftype in cols:
                text = parts[idx]
                if ftype == 'token':
                    if not text:
                        raise _error(path, line_no, f'field {name!r} is empty')
                    values[name].append(text)
                elif ftype == 'float':
                    if not text:
                        raise _error(path, line_no, f'field {name!r} is empty')
                    values[name].append(_to_float(path, line_no, name, text))
                elif ftype == 'token_seq':
                    values[name].append(tuple(text.split()))
                else:  # float_seq
                    values[name].append(
                        np.array([_to_float(path, line_no, name, t) for t in text.split()],
                                 dtype=np.float64))
        progress.update_to(f.buffer.tell())
    out: Dict[str, np.ndarray] = {}
    # numpy arrays of millions of strings take a while too
    for _, name, ftype in track(cols, f'columns of {osp.basename(path)}', unit='columns'):
        if ftype == 'token':
            out[name] = np.array(values[name], dtype=str)
        elif ftype == 'float':
            out[name] = np.array(values[name], dtype=np.float64)
        else:  # sequences are ragged: one object per row
            arr = np.empty(len(values[name]), dtype=object)
            arr[:] = values[name]
            out[name] = arr
    return out


def _parse_time(path: str, line_no: int, name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        try:  # ISO-8601 as in yoochoose-clicks.dat: 2014-04-07T10:51:09.277Z
            stamp = datetime.datetime.fromisoformat(text.replace('Z', '+00:00'))
        except ValueError:
            raise _error(
                path, line_no, f'column {name!r}: {text!r} is neither a number nor '
                'an ISO-8601 date-time') from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=datetime.timezone.utc)
        return stamp.timestamp()
    if value != value:
        raise _error(path, line_no, f'column {name!r} is NaN')
    return value


def read_session_file(path: str,
                      session_key: str = 'SessionId',
                      item_key: str = 'ItemId',
                      time_key: str = 'Time',
                      sep: Optional[str] = None,
                      columns: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    """Read a GRU4Rec-style click file.

    Args:
        path: the file.
        session_key, item_key, time_key: header names of the three columns used.
        sep: field separator; ``None`` picks tab if the first line holds a tab, else comma.
        columns: for files without a header line (the raw ``yoochoose-clicks.dat``: session,
            timestamp, item, category), the column names in order; line 1 is then data.

    Returns:
        ``{'session_id': str array, 'item_id': str array, 'timestamp': float64 array}`` in file
        order (the names of :func:`read_atomic_inter`, so both feed the same preprocessing).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'no session file at {path!r}')
    with open(path, encoding='utf-8') as f, _file_progress(path) as progress:
        first = f.readline()
        if not first.strip():
            raise _error(path, 1, 'empty first line: expected a header or data')
        if sep is None:
            sep = '\t' if '\t' in first else ','
        if columns is None:
            header = [h.strip() for h in first.rstrip('\r\n').split(sep)]
            start, pending = 2, []
        else:
            header = list(columns)
            start, pending = 1, [first]
        idx = {}
        for key in (session_key, item_key, time_key):
            if key not in header:
                raise _error(
                    path, 1, f'no column {key!r} in the header {header} '
                    f'(separator {sep!r}); set session_key/item_key/time_key')
            idx[key] = header.index(key)
        n_cols = len(header)
        sessions, items, times = [], [], []

        def lines():
            yield from pending
            yield from f

        for line_no, line in enumerate(lines(), start=start):
            if not line_no % _PROGRESS_LINES:
                progress.update_to(f.buffer.tell())
            line = line.rstrip('\r\n')
            if not line.strip():
                continue
            parts = line.split(sep)
            if len(parts) != n_cols:
                raise _error(
                    path, line_no, f'{len(parts)} values separated by {sep!r}, '
                    f'expected {n_cols} ({", ".join(header)})')
            s, i, t = parts[idx[session_key]], parts[idx[item_key]], parts[idx[time_key]]
            for name, text in ((session_key, s), (item_key, i), (time_key, t)):
                if not text.strip():
                    raise _error(path, line_no, f'column {name!r} is empty')
            sessions.append(s.strip())
            items.append(i.strip())
            times.append(_parse_time(path, line_no, time_key, t.strip()))
        progress.update_to(f.buffer.tell())
    with stage(f'columns of {osp.basename(path)}'):
        return dict(
            session_id=np.array(sessions, dtype=str),
            item_id=np.array(items, dtype=str),
            timestamp=np.array(times, dtype=np.float64))


def ml100k_path() -> str:
    """Path of ``recbole/dataset_example/ml-100k/ml-100k.inter`` in the installed recbole wheel.

    The package is located with :func:`importlib.util.find_spec` only: importing recbole would
    pull in dependencies mmext does not install.  MovieLens' terms forbid redistribution, so
    mmext never ships the file itself.
    """
    try:
        spec = importlib.util.find_spec('recbole')
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise FileNotFoundError('MovieLens-100K is read from the recbole package, which is not '
                                f'installed: {_RECBOLE_HINT}')
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [osp.dirname(spec.origin)]
    for root in roots:
        candidate = os.path.join(root, 'dataset_example', 'ml-100k', 'ml-100k.inter')
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(f'recbole is installed at {roots} but has no '
                            f'dataset_example/ml-100k/ml-100k.inter; {_RECBOLE_HINT}')
