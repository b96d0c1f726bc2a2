"""Session datasets for session-based recommenders (GRU4Rec, Hidasi et al. ICLR 2016).

:func:`load_sessions` turns an interaction file into train and test *sessions* with the
preprocessing of the official GRU4Rec RSC15 script, and :class:`SessionDataset` serves one split
to mmengine's Runner through :class:`~.session_parallel.SessionParallelBatchSampler`.

Preprocessing (all steps optional through arguments, in this order):

1. read the file: a RecBole atomic file (``file_format='atomic'``, default ml-100k from the
   installed recbole wheel, groups = ``user_id``) or a GRU4Rec session file
   (``file_format='session'``, groups = ``SessionId``);
2. order events by (group, time), stably;
3. ``session_gap``: cut a group's stream into sessions wherever two consecutive events are more
   than ``session_gap`` seconds apart (``None``: one session per group).  For MovieLens, where a
   group is a user's whole history, this is what makes sessions of the rating bursts;
4. ``drop_repeats``: drop an event repeating its predecessor's item in the same session;
5. ``k_core``: ``(k_group, k_item)`` fixed-point k-core filter;
6. GRU4Rec's filter: sessions with < 2 events, then items with < ``min_item_support`` events,
   then sessions with < ``min_session_length`` events;
7. time split: sessions that *end* in the last ``test_seconds`` of the log are test sessions
   (:func:`~.preprocess.split_by_time`; RSC15 uses the last day), or a separate
   ``test_data_path``, or ``split_mode='leave_one_out'`` (per sequence: last event = test,
   second-to-last = validation, the rest trains; only those events are scored);
8. time split: test events whose item never occurs in training are dropped and counted
   (logged, and in ``metainfo['num_unseen_test_events']``), then test sessions left with < 2
   events are dropped (the official GRU4Rec protocol).  Leave-one-out: by default
   (``unseen_targets='rank'``) nothing is dropped for being unseen: evaluation-only items get
   ids after the training items; ``unseen_targets='drop'`` drops them as the time split does.
   ``metainfo['eval_population']`` says how many events are scored and how many were dropped
   and why; :class:`mmext.RankingMetric` logs it with every evaluation.

Item ids (1..n, 0 = padding) come from the training split (then, leave-one-out with
``unseen_targets='rank'``, the evaluation-only items), and the :class:`IdMap` goes into
``metainfo`` so that mmengine stores it in every checkpoint (``meta['dataset_meta']``).  Both
splits of one configuration share one cached computation.
"""
import json
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import print_log
from torch.utils.data import Dataset

from mmext.registry import DATASETS

from .preprocess import (IdMap, drop_consecutive_repeats, filter_short_sessions,
                         filter_unseen_items, k_core_filter, split_by_time, stable_time_order)
from .readers import ml100k_path, read_atomic_inter, read_session_file

__all__ = ['SessionSplit', 'load_sessions', 'SessionDataset']

_CACHE: Dict[str, Dict[str, Any]] = {}


class SessionSplit:
    """Sessions stored contiguously: ``items[offsets[s]:offsets[s + 1]]`` is session ``s``."""

    def __init__(self,
                 items: np.ndarray,
                 offsets: np.ndarray,
                 times: np.ndarray,
                 session_keys: np.ndarray,
                 targets: Optional[np.ndarray] = None) -> None:
        self.items, self.offsets, self.times = items, offsets, times
        self.session_keys = session_keys
        # Which events are evaluated as the target of their predecessor (default: every
        # non-first event); leave-one-out splits evaluate one event per sequence.
        if targets is None:
            targets = np.ones(len(items), dtype=bool)
            targets[offsets[:-1]] = False
        self.targets = targets

    @property
    def num_sessions(self) -> int:
        return len(self.offsets) - 1


def _sessions_from_events(groups: np.ndarray, times: np.ndarray,
                          session_gap: Optional[float]) -> np.ndarray:
    """Session label per event (events already sorted by group, time)."""
    new = np.ones(len(groups), dtype=bool)
    if len(groups):
        new[1:] = groups[1:] != groups[:-1]
        if session_gap is not None:
            new[1:] |= np.diff(times) > session_gap
    return np.cumsum(new) - 1


def _to_split(sessions: np.ndarray,
              items: np.ndarray,
              times: np.ndarray,
              keys: np.ndarray,
              targets: Optional[np.ndarray] = None) -> SessionSplit:
    """Contiguous sessions ordered by start time (ties by label); events stay in time order."""
    if len(sessions) == 0:
        return SessionSplit(
            np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0), np.zeros(0, dtype=str))
    labels, first, counts = np.unique(sessions, return_index=True, return_counts=True)
    start_time = times[first]
    sess_order = np.lexsort((labels, start_time))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[sess_order] = np.arange(len(labels))
    codes = np.searchsorted(labels, sessions)
    order = np.lexsort((times, rank[codes]))  # stable: file order kept among equal times
    offsets = np.concatenate([[0], np.cumsum(counts[sess_order])]).astype(np.int64)
    tg = None
    if targets is not None:
        tg = targets[order].copy()
        tg[offsets[:-1]] = False  # a first event has no predecessor to predict it
    return SessionSplit(items[order], offsets, times[order], keys[first[sess_order]], tg)


def _read_events(path: str, file_format: str, group_key: Optional[str], item_key: Optional[str],
                 time_key: Optional[str], sep: Optional[str],
                 columns: Optional[Sequence[str]]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    if file_format == 'atomic':
        g_key, i_key, t_key = (group_key or 'user_id', item_key or 'item_id', time_key
                               or 'timestamp')
        cols = read_atomic_inter(path, fields=[g_key, i_key, t_key])
        groups, items, times = cols[g_key], cols[i_key], cols[t_key]
    elif file_format == 'session':
        cols = read_session_file(
            path,
            session_key=group_key or 'SessionId',
            item_key=item_key or 'ItemId',
            time_key=time_key or 'Time',
            sep=sep,
            columns=columns)
        groups, items, times = cols['session_id'], cols['item_id'], cols['timestamp']
    else:
        raise ValueError(f"file_format must be 'atomic' or 'session', got {file_format!r}")
    if groups.dtype.kind not in 'US' or items.dtype.kind not in 'US':
        raise ValueError(f'{path}: group and item columns must be token fields')
    return groups, items, times


def load_sessions(data_path: Optional[str] = None,
                  file_format: str = 'atomic',
                  group_key: Optional[str] = None,
                  item_key: Optional[str] = None,
                  time_key: Optional[str] = None,
                  sep: Optional[str] = None,
                  columns: Optional[Sequence[str]] = None,
                  session_gap: Optional[float] = None,
                  drop_repeats: bool = False,
                  k_core: Optional[Tuple[int, int]] = None,
                  min_item_support: int = 5,
                  min_session_length: int = 2,
                  test_seconds: float = 86400.0,
                  test_data_path: Optional[str] = None,
                  split_mode: str = 'time',
                  unseen_targets: Optional[str] = None) -> Dict[str, Any]:
    """Preprocess and split once per argument set (cached in-process); see the module docstring.

    ``test_data_path``: a separate, already split test file in the same format (e.g. the
    official ``rsc15_test.txt``); ``data_path`` is then all training data, preprocessed as usual,
    and the test file only loses unseen items and short sessions (steps 1-3 and 8).

    ``split_mode='leave_one_out'`` (one sequence per group, ``session_gap=None``): training
    sequences are each group's events but the last two; ``'valid'`` evaluates the second-to-last
    event after the ones before it, ``'test'`` the last event after all others.
    ``unseen_targets`` (leave-one-out only; ``None`` = ``'rank'``): ``'rank'`` gives items
    that occur only in evaluation events ids after the training items, so every group is
    evaluated (its unseen items ranked and read by their untrained weights, as the SASRec
    paper's and RecBole's populations); ``'drop'`` drops evaluation events with items unseen in
    training, and a group whose held-out event is dropped is not evaluated (counted in
    ``num_unseen_targets``).  The time split always drops unseen test events (the official
    GRU4Rec protocol; ``unseen_targets`` must be ``None`` or ``'drop'`` there).

    Returns ``{'train': SessionSplit, 'test': SessionSplit, 'item_map': IdMap,
    'item_counts': int64 array (n + 1,) of training events per id, 'stats': dict}``.
    """
    args = dict(locals())
    key = json.dumps(args, sort_keys=True, default=str)
    if key in _CACHE:
        return _CACHE[key]
    path = data_path or ml100k_path()
    read = dict(
        file_format=file_format,
        group_key=group_key,
        item_key=item_key,
        time_key=time_key,
        sep=sep,
        columns=columns)
    groups, items, times = _read_events(path, **read)
    stats: Dict[str, Any] = dict(path=path, raw_events=int(len(items)))

    order = stable_time_order(groups, times)
    groups, items, times = groups[order], items[order], times[order]
    sessions = _sessions_from_events(groups, times, session_gap)
    keep = np.ones(len(items), dtype=bool)
    if drop_repeats:
        keep &= drop_consecutive_repeats(sessions, items)  # already time-ordered
    if k_core is not None:
        keep[keep] = k_core_filter(groups[keep], items[keep], int(k_core[0]), int(k_core[1]))
    sessions, items, times = sessions[keep], items[keep], times[keep]
    # GRU4Rec's filters: short sessions, rare items, then short sessions again.
    m = filter_short_sessions(sessions, 2)
    sessions, items, times = sessions[m], items[m], times[m]
    if min_item_support > 1 and len(items):
        _, inv, cnt = np.unique(items, return_inverse=True, return_counts=True)
        m = cnt[inv.reshape(-1)] >= min_item_support
        sessions, items, times = sessions[m], items[m], times[m]
    m = filter_short_sessions(sessions, max(2, min_session_length))
    sessions, items, times = sessions[m], items[m], times[m]
    if len(items) == 0:
        raise ValueError(f'{path}: no events left after preprocessing ({stats})')

    if unseen_targets not in (None, 'rank', 'drop'):
        raise ValueError(f"unseen_targets must be 'rank' or 'drop', got {unseen_targets!r}")
    if split_mode == 'leave_one_out':
        return _leave_one_out(sessions, items, times, path, stats, key, unseen_targets or 'rank')
    if split_mode != 'time':
        raise ValueError(f"split_mode must be 'time' or 'leave_one_out', got {split_mode!r}")
    if unseen_targets == 'rank':
        raise ValueError("unseen_targets='rank' needs split_mode='leave_one_out'; the time "
                         'split drops unseen test events (the official GRU4Rec protocol)')
    if test_data_path is None:
        is_train = split_by_time(sessions, times, test_seconds)
        te_s, te_i, te_t = sessions[~is_train], items[~is_train], times[~is_train]
    else:
        is_train = np.ones(len(items), dtype=bool)
        g2, te_i, te_t = _read_events(test_data_path, **read)
        order = stable_time_order(g2, te_t)
        g2, te_i, te_t = g2[order], te_i[order], te_t[order]
        te_s = _sessions_from_events(g2, te_t, session_gap) + int(sessions.max()) + 1
        stats['test_path'] = test_data_path
    tr = _to_split(sessions[is_train], items[is_train], times[is_train],
                   sessions[is_train].astype(str))
    item_map = IdMap.fit(tr.items)
    seen, n_unseen = filter_unseen_items(te_i, np.asarray(item_map.tokens))
    te_s, te_i, te_t = te_s[seen], te_i[seen], te_t[seen]
    m = filter_short_sessions(te_s, 2)
    n_short = int(len(np.unique(te_s)) - len(np.unique(te_s[m])))
    te = _to_split(te_s[m], te_i[m], te_t[m], te_s[m].astype(str))
    tr.items = item_map.encode(tr.items)
    te.items = item_map.encode(te.items)
    counts = np.bincount(tr.items, minlength=item_map.num_ids).astype(np.int64)
    stats.update(
        test_population=dict(
            unit='events',
            scored=int(len(te.items) - te.num_sessions),
            dropped={
                'test events with items unseen in training (GRU4Rec protocol)': n_unseen,
                'test sessions left with < 2 events': n_short
            }),
        events=int(len(items)),
        train_events=int(len(tr.items)),
        train_sessions=tr.num_sessions,
        test_events=int(len(te.items)),
        test_sessions=te.num_sessions,
        num_items=len(item_map),
        num_unseen_test_events=n_unseen,
        num_test_sessions_too_short=n_short,
        split_time=float(times.max() - test_seconds))
    print_log(
        f'sessions from {path}: {stats["train_sessions"]} train / '
        f'{stats["test_sessions"]} test sessions, {len(item_map)} items; dropped '
        f'{n_unseen} test events with items unseen in training and {n_short} test '
        'sessions left with < 2 events',
        logger='current')
    out = dict(train=tr, test=te, item_map=item_map, item_counts=counts, stats=stats)
    _CACHE[key] = out
    return out


def _leave_one_out(sessions: np.ndarray, items: np.ndarray, times: np.ndarray, path: str,
                   stats: Dict[str, Any], key: str, unseen_targets: str) -> Dict[str, Any]:
    """Leave-one-out splits of time-ordered sequences (see :func:`load_sessions`)."""
    codes = np.unique(sessions, return_inverse=True)[1].reshape(-1)
    length = np.bincount(codes)[codes]
    start = np.searchsorted(codes, codes)  # events are grouped and time-ordered
    pos = np.arange(len(codes)) - start
    is_train = pos < length - 2
    m = filter_short_sessions(sessions[is_train], 2)
    tr_idx = np.flatnonzero(is_train)[m]
    tr = _to_split(sessions[tr_idx], items[tr_idx], times[tr_idx], sessions[tr_idx].astype(str))
    # training items first (ids 1..n_train in both modes); 'rank' appends evaluation-only items
    item_map = IdMap.fit(
        np.concatenate([tr.items, items]) if unseen_targets == 'rank' else tr.items)
    known = np.asarray(IdMap.fit(tr.items).tokens)
    splits: Dict[str, Any] = {}
    for name, held_out in (('valid', 2), ('test', 1)):
        use = pos <= length - held_out
        target = use & (pos == length - held_out)
        s_, i_, t_, g_ = sessions[use], items[use], times[use], target[use]
        seen, n_unseen = filter_unseen_items(i_, known)
        n_lost = int((g_ & ~seen).sum())
        if unseen_targets == 'rank':  # counted, but scored
            stats[f'{name}_untrained_targets'] = n_lost
            seen, n_unseen, n_lost = np.ones_like(seen), 0, 0
        s_, i_, t_, g_ = s_[seen], i_[seen], t_[seen], g_[seen]
        keep = filter_short_sessions(s_, 2)
        n_short = int(g_[~keep].sum())
        s_, i_, t_, g_ = s_[keep], i_[keep], t_[keep], g_[keep]
        split = _to_split(s_, i_, t_, s_.astype(str), g_)
        split.items = item_map.encode(split.items)
        splits[name] = split
        stats[f'{name}_unseen_events'] = n_unseen
        stats[f'{name}_unseen_targets'] = n_lost
        stats[f'{name}_no_history'] = n_short
        stats[f'{name}_events'] = int(split.targets.sum())
        stats[f'{name}_population'] = dict(
            unit='held-out events',
            scored=stats[f'{name}_events'],
            dropped={
                "held-out item unseen in training (unseen_targets='drop')": n_lost,
                'no history left': n_short
            })
    tr.items = item_map.encode(tr.items)
    counts = np.bincount(tr.items, minlength=item_map.num_ids).astype(np.int64)
    stats.update(
        split_mode='leave_one_out',
        unseen_targets=unseen_targets,
        train_events=int(len(tr.items)),
        train_sessions=tr.num_sessions,
        num_items=len(item_map),
        num_unseen_test_events=stats['test_unseen_events'],
        num_unseen_targets=stats['test_unseen_targets'])
    print_log(
        f'leave-one-out sequences from {path}: {tr.num_sessions} train sequences, '
        f'{len(item_map)} items (unseen_targets={unseen_targets!r}); valid/test evaluate '
        f'{stats["valid_events"]}/'
        f'{stats["test_events"]} held-out events, dropping {stats["test_unseen_targets"]} '
        f'test targets and {stats["test_unseen_events"]} test events with items unseen in '
        'training',
        logger='current')
    out = dict(
        train=tr,
        valid=splits['valid'],
        test=splits['test'],
        item_map=item_map,
        item_counts=counts,
        stats=stats)
    _CACHE[key] = out
    return out


@DATASETS.register_module()
class SessionDataset(Dataset):
    """One split of :func:`load_sessions`, indexed by *input events* (events with a successor).

    Args:
        split: ``'train'`` or ``'test'`` (and ``'valid'`` with ``split_mode='leave_one_out'``).
        **load_args: the arguments of :func:`load_sessions` (``data_path=None`` → ml-100k).

    ``len(dataset)`` is the number of predictions: input events for training, evaluated input
    events otherwise (the size mmengine's evaluator expects).  Batches come from
    :meth:`__getitems__` with event indices (``-1`` = idle slot), as yielded by
    ``SessionParallelBatchSampler``::

        {'item': LongTensor[B],     # item id of the input event (0 in idle slots)
         'target': LongTensor[B],   # item id of the next event (0 in idle slots)
         'reset': BoolTensor[B],    # input is the first event of its session: zero the state
         'valid': BoolTensor[B],    # slot is busy
         'evaluate': BoolTensor[B]} # the target is a held-out event to score

    and :func:`~.session_parallel.session_parallel_collate` hands it to the model as
    ``{'inputs': batch}`` (the recommender contract, :mod:`mmext.models.recommenders.base`).
    ``metainfo['num_items']`` is the item count models read; :attr:`item_counts` the training
    popularity.
    """

    def __init__(self, split: str = 'train', **load_args: Any) -> None:
        data = load_sessions(**load_args)
        if split not in data or split in ('item_map', 'item_counts', 'stats'):
            splits = [k for k in ('train', 'valid', 'test') if k in data]
            raise ValueError(f'split must be one of {splits} for this split_mode, got {split!r}')
        self.split = split
        part: SessionSplit = data[split]
        self.items = torch.from_numpy(part.items)
        self.offsets = part.offsets
        self.times = part.times  # event times (seconds), for exporting the split
        self.item_map: IdMap = data['item_map']
        self.item_counts = data['item_counts']
        is_first = np.zeros(len(part.items) + 1, dtype=bool)
        is_first[part.offsets[:-1]] = True
        # evaluate[e]: input event e's successor is a held-out target (every successor, except
        # in leave-one-out splits).  Training uses every input event.
        evaluate = np.zeros(len(part.items), dtype=bool)
        evaluate[:-1] = part.targets[1:]
        is_last = np.zeros(len(part.items), dtype=bool)
        is_last[part.offsets[1:] - 1] = True
        self._input_events = np.flatnonzero(~is_last if split == 'train' else evaluate)
        self._items_np, self._evaluate_np = part.items.astype(np.int64), evaluate
        self._is_first_np = is_first[:-1]
        self._metainfo = dict(
            data['stats'],
            item_map=self.item_map.to_dict(),
            num_items=len(self.item_map),
            eval_population=data['stats'].get(f'{split}_population'))

    @property
    def metainfo(self) -> dict:
        """Saved by mmengine as ``meta['dataset_meta']``: the item map and the split's stats."""
        return dict(self._metainfo)

    @property
    def num_items(self) -> int:
        return len(self.item_map)

    @property
    def num_sessions(self) -> int:
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return len(self._input_events)

    def __getitem__(self, idx: int) -> dict:
        """The ``idx``-th input event (in session order) as a one-slot batch."""
        return self.__getitems__([int(self._input_events[idx])])

    @property
    def evaluate_mask(self) -> np.ndarray:
        """Per event: its successor is a scored target (used by ``group_steps`` sampling)."""
        return self._evaluate_np

    def __getitems__(self, events: list) -> dict:
        """One step (a list of B event indices) → ``(B,)`` tensors; a group of T steps (a list of
        T such lists) → ``(T, B)`` tensors."""
        # numpy, not torch: a training step runs this once for B ~ 32 events, where each torch
        # call costs several times the work it does (same result, one conversion at the end)
        ev = np.asarray(events, dtype=np.int64)
        valid = ev >= 0
        n = len(self._items_np)
        if ev.size and int(ev.max()) >= n - 1:
            raise IndexError(f'event index {int(ev.max())} out of range for {n} events')
        safe = np.where(valid, ev, 0)
        if (valid & self._is_first_np[safe + 1]).any():
            raise IndexError('an input event is the last event of its session (no target)')
        batch = dict(
            item=np.where(valid, self._items_np[safe], 0),
            target=np.where(valid, self._items_np[safe + 1], 0),
            reset=valid & self._is_first_np[safe],
            valid=valid,
            evaluate=valid & self._evaluate_np[safe])
        return {k: torch.from_numpy(v) for k, v in batch.items()}
