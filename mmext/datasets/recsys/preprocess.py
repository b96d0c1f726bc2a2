"""Preprocessing of interaction logs for sequential recommenders, as pure numpy functions.

Every filter returns a boolean *keep-mask* aligned with its input arrays, so filters compose with
``&`` and the caller applies the mask once to all columns.  Sorting is always stable: events with
equal timestamps keep their file order, so results do not depend on the sort algorithm.

* :func:`stable_time_order` orders events by (group, time) — per user or per session.
* :func:`k_core_filter` repeats "drop users with < k_user and items with < k_item events" until
  nothing changes (the fixed point; one pass is not enough, dropping items shortens users).
* :func:`drop_consecutive_repeats` removes an event whose item equals the previous event's item
  of the same group (GRU4Rec's RSC15 preprocessing keeps such repeats; the option is for
  datasets where they are logging artefacts).
* :func:`filter_short_sessions` removes groups with fewer than ``min_length`` events.
* :func:`split_by_time` is the session split of Hidasi et al. (ICLR 2016): sessions that *end*
  in the last ``test_seconds`` of the log are test sessions, all others training sessions.
* :func:`filter_unseen_items` keeps only evaluation events whose item was seen in training.
* :class:`IdMap` maps raw tokens to contiguous ids ``1..n`` (0 is padding) and round-trips
  through a checkpoint's ``meta['dataset_meta']`` with :meth:`IdMap.to_dict` /
  :meth:`IdMap.from_dict`.
"""
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    'group_codes', 'stable_time_order', 'k_core_filter', 'drop_consecutive_repeats',
    'filter_short_sessions', 'split_by_time', 'filter_unseen_items', 'IdMap'
]


def _check_aligned(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f'arrays must have the same length, got {lengths}')
    return next(iter(lengths.values()))


def group_codes(keys: np.ndarray) -> np.ndarray:
    """Integer code of each key (equal keys ↔ equal codes), codes in sorted-key order."""
    return np.unique(np.asarray(keys), return_inverse=True)[1].reshape(-1)


def stable_time_order(groups: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Permutation sorting events by group, then by time; ties keep their input order.

    ``np.lexsort`` is a stable merge sort, so events with equal (group, time) stay in file order.
    """
    _check_aligned(groups=groups, times=times)
    times = np.asarray(times, dtype=np.float64)
    if np.isnan(times).any():
        raise ValueError(f'times hold NaN at positions {np.flatnonzero(np.isnan(times))[:5]}')
    return np.lexsort((times, group_codes(groups)))


def k_core_filter(users: np.ndarray, items: np.ndarray, k_user: int, k_item: int) -> np.ndarray:
    """Keep-mask of the k-core: every kept user has ≥ ``k_user`` and every kept item ≥ ``k_item``
    kept interactions.  Filters users and items alternately until a fixed point."""
    n = _check_aligned(users=users, items=items)
    if k_user < 0 or k_item < 0:
        raise ValueError(f'k_user and k_item must be >= 0, got {k_user}, {k_item}')
    u, i = group_codes(users), group_codes(items)
    keep = np.ones(n, dtype=bool)
    while True:
        u_count = np.bincount(u[keep], minlength=u.max() + 1 if n else 0)
        i_count = np.bincount(i[keep], minlength=i.max() + 1 if n else 0)
        new_keep = keep & (u_count[u] >= k_user) & (i_count[i] >= k_item)
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep


def drop_consecutive_repeats(groups: np.ndarray,
                             items: np.ndarray,
                             times: Optional[np.ndarray] = None) -> np.ndarray:
    """Keep-mask without immediate repeats: an event is dropped when the previous event of the
    same group (in time order if ``times`` is given, else in input order) has the same item."""
    n = _check_aligned(groups=groups, items=items)
    order = (
        stable_time_order(groups, times) if times is not None else np.argsort(
            group_codes(groups), kind='stable'))
    g, it = group_codes(groups)[order], group_codes(items)[order]
    repeat = np.zeros(n, dtype=bool)
    repeat[1:] = (g[1:] == g[:-1]) & (it[1:] == it[:-1])
    keep = np.ones(n, dtype=bool)
    keep[order[repeat]] = False
    return keep


def filter_short_sessions(groups: np.ndarray, min_length: int = 2) -> np.ndarray:
    """Keep-mask of the events of groups with at least ``min_length`` events."""
    codes = group_codes(groups)
    if len(codes) == 0:
        return np.zeros(0, dtype=bool)
    return np.bincount(codes)[codes] >= min_length


def split_by_time(groups: np.ndarray,
                  times: np.ndarray,
                  test_seconds: float = 86400.0) -> np.ndarray:
    """Train-mask of the time-based split: a group whose *last* event is at or after
    ``max(times) - test_seconds`` is a test group (all its events), every other group trains.

    Whole sessions go to one side, so no test session is partially seen during training.
    """
    _check_aligned(groups=groups, times=times)
    times = np.asarray(times, dtype=np.float64)
    codes = group_codes(groups)
    if len(codes) == 0:
        return np.zeros(0, dtype=bool)
    end = np.full(codes.max() + 1, -np.inf)
    np.maximum.at(end, codes, times)
    return end[codes] < times.max() - test_seconds  # official: test iff end >= tmax - 1 day


def filter_unseen_items(items: np.ndarray, train_items: Iterable) -> Tuple[np.ndarray, int]:
    """Keep-mask of evaluation events whose item occurs in training, and how many were dropped.

    A model cannot score an item it has no embedding for; dropping these events (and counting
    them, so the caller can log it) is what GRU4Rec's evaluation does.
    """
    keep = np.isin(
        np.asarray(items),
        np.asarray(list(train_items) if not isinstance(train_items, np.ndarray) else train_items))
    return keep, int((~keep).sum())


class IdMap:
    """Raw tokens ↔ contiguous ids ``1..n``; id 0 is reserved for padding.

    Ids follow the order tokens are first met in :meth:`fit` (deterministic for a fixed file),
    and the map is saved as a plain ``{'tokens': [...]}`` dict so that a checkpoint holding it in
    ``meta['dataset_meta']`` loads under torch's weights-only unpickler.
    """

    PAD = 0

    def __init__(self, tokens: Sequence[str] = ()) -> None:
        self._tokens = [str(t) for t in tokens]
        self._index = {t: i + 1 for i, t in enumerate(self._tokens)}
        self._sorted: Optional[Tuple[np.ndarray, np.ndarray]] = None
        if len(self._index) != len(self._tokens):
            dup = [t for t in self._index if self._tokens.count(t) > 1][:5]
            raise ValueError(f'IdMap tokens must be unique; repeated: {dup}')

    @classmethod
    def fit(cls, tokens: Iterable) -> 'IdMap':
        """Map built from the distinct tokens, in order of first occurrence."""
        arr = np.asarray(list(tokens) if not isinstance(tokens, np.ndarray) else tokens)
        if arr.size == 0:
            return cls([])
        _, first = np.unique(arr, return_index=True)
        return cls([str(t) for t in arr[np.sort(first)]])

    def __len__(self) -> int:
        """Number of real tokens ``n`` (the padding id is not counted)."""
        return len(self._tokens)

    @property
    def num_ids(self) -> int:
        """``n + 1``: the size of an embedding table indexed by these ids (padding included)."""
        return len(self._tokens) + 1

    @property
    def tokens(self) -> Tuple[str, ...]:
        return tuple(self._tokens)

    def __contains__(self, token: Any) -> bool:
        return str(token) in self._index

    def encode(self, tokens: Iterable, allow_unknown: bool = False) -> np.ndarray:
        """Ids of ``tokens`` (int64); an unknown token raises ``KeyError`` naming it, or maps to 0
        (padding) when ``allow_unknown``."""
        arr = np.asarray(list(tokens) if not isinstance(tokens, np.ndarray) else tokens)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        arr = arr.astype(str)
        if not self._tokens:
            pos, found = np.zeros(arr.shape, np.int64), np.zeros(arr.shape, bool)
        else:
            if self._sorted is None:  # vectorised lookup: binary search in the sorted tokens
                order = np.argsort(np.array(self._tokens, dtype=str), kind='stable')
                self._sorted = (np.array(self._tokens, dtype=str)[order], order + 1)
            keys, ids = self._sorted
            pos = np.searchsorted(keys, arr).clip(max=len(keys) - 1)
            found = keys[pos] == arr
        if not found.all() and not allow_unknown:
            raise KeyError(f'token {arr[~found][0]!r} is not in the IdMap ({len(self)} tokens; '
                           f'{int((~found).sum())} unknown)')
        out = np.where(found, ids[pos] if self._tokens else 0, self.PAD)
        return out.astype(np.int64)

    def decode(self, ids: Iterable[int]) -> np.ndarray:
        """Tokens of ``ids``; 0 (padding) or an id out of range raises ``IndexError``."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        bad = ids[(ids < 1) | (ids > len(self))]
        if bad.size:
            raise IndexError(f'ids {bad[:5].tolist()} are not token ids (valid: 1..{len(self)})')
        return np.array(self._tokens, dtype=str)[ids - 1] if ids.size else np.array([], dtype=str)

    def to_dict(self) -> Dict[str, Any]:
        """Plain, checkpoint-safe form: ``{'tokens': [token of id 1, token of id 2, ...]}``."""
        return {'tokens': list(self._tokens)}

    @classmethod
    def from_dict(cls, state: Dict[str, Any]) -> 'IdMap':
        if not isinstance(state, dict) or 'tokens' not in state:
            raise ValueError(f'IdMap.from_dict expects {{"tokens": [...]}}, got {type(state)}'
                             f' with keys {list(state) if isinstance(state, dict) else None}')
        return cls(state['tokens'])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._tokens == other._tokens

    def __repr__(self) -> str:
        return f'IdMap({len(self)} tokens + padding id 0)'
