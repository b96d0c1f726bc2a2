"""Leave-one-out user sequences for next-item models such as SASRec.

The protocol of Kang & McAuley (SASRec, ICDM 2018, Sec. IV-A) and of RecBole's ``LS``
``valid_and_test`` split: each user's interactions are put in time order (ties keep file order);
the last item is the test target, the second-to-last the validation target and the rest is the
training sequence.  Hence

* training sequences never contain a validation or test item of the same user (the split is per
  position, not per item: another user may of course have interacted with the same item);
* validation predicts item ``n-1`` from items ``1..n-2``; test predicts item ``n`` from items
  ``1..n-1`` (validation item included, as in both references);
* item ids 1..n_train are the items of the *training* sequences; a validation/test item never
  seen in training (``unseen_targets='rank'``, default) gets an id after them and is ranked like
  any other item by its untrained embedding, so every user with >= 3 interactions is evaluated,
  as in the paper's official code and RecBole (the id space is the file's items);
  ``unseen_targets='drop'`` instead keeps the training items only, drops users whose held-out
  item is unseen and removes unseen items from test histories.  Counts are in
  ``metainfo['stats']`` and ``metainfo['eval_population']`` (scored / dropped, with the reason),
  which :class:`mmext.RankingMetric` logs with every evaluation;
* users with fewer than 3 interactions keep everything for training and are not evaluated
  (the official code does the same).

Histories are truncated to the last ``max_len`` items and left-padded with 0, so the most recent
item always sits at the last position.  Training windows (``train_windows``):

* ``'last'`` (official code): one window per user, the last ``max_len`` (input, next item) pairs;
* ``'all'``: windows ending every ``train_stride`` pairs from the end, each keeping the loss only
  on its ``train_stride`` newest targets, so every training interaction is a target exactly once
  per epoch (RecBole's per-prefix samples cover the same targets) and sees up to ``max_len`` items
  of history when ``train_stride < max_len``.

Negatives: ``num_train_negatives`` per training position are redrawn on every access, uniformly
among items the user never interacted with in training (official code); ``num_eval_negatives``
per evaluated user are drawn once (seeded) among items the user never interacted with at all,
uniformly or in proportion to training popularity (RecBole's ``uni100`` / ``pop100``).
"""
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.dataset import BaseDataset

from mmext.registry import DATASETS, FUNCTIONS
from mmext.utils.progress import track

from .preprocess import IdMap, drop_consecutive_repeats, k_core_filter, stable_time_order
from .readers import ml100k_path, read_atomic_inter

__all__ = ['LeaveOneOutSequenceDataset', 'sequence_collate', 'leave_one_out_sequences']

_SPLITS = ('train', 'val', 'test')
_CACHE: Dict[tuple, Dict[str, Any]] = {}


def leave_one_out_sequences(path: str,
                            user_field: str = 'user_id',
                            item_field: str = 'item_id',
                            time_field: str = 'timestamp',
                            rating_field: str = 'rating',
                            min_rating: Optional[float] = None,
                            user_core: int = 0,
                            item_core: int = 0,
                            drop_repeats: bool = False) -> Dict[str, Any]:
    """Read an atomic ``.inter`` file, filter it and order each user's items by time.

    Filters, in order: ``rating >= min_rating`` (if given), the (``user_core``, ``item_core``)
    k-core, then dropping an item equal to the user's previous one (``drop_repeats``).

    Returns:
        ``{'users': [raw user token, ...], 'sequences': [np.ndarray of raw item tokens in time
        order, ...], 'num_interactions': int}``, users in order of their first interaction in the
        file.
    """
    fields = [user_field, item_field, time_field
              ] + ([rating_field] if min_rating is not None else [])
    key = (osp.abspath(path), osp.getmtime(path), tuple(fields), min_rating, user_core, item_core,
           drop_repeats)
    if key in _CACHE:
        return _CACHE[key]
    cols = read_atomic_inter(path, fields)
    users, items, times = cols[user_field], cols[item_field], cols[time_field]
    keep = np.ones(len(users), dtype=bool)
    if min_rating is not None:
        keep &= cols[rating_field] >= min_rating
    users, items, times = users[keep], items[keep], times[keep]
    if user_core or item_core:
        keep = k_core_filter(users, items, user_core, item_core)
        users, items, times = users[keep], items[keep], times[keep]
    if drop_repeats:
        keep = drop_consecutive_repeats(users, items, times)
        users, items, times = users[keep], items[keep], times[keep]
    if len(users) == 0:
        raise ValueError(f'{path}: no interaction is left after filtering (min_rating='
                         f'{min_rating}, user_core={user_core}, item_core={item_core})')
    order = stable_time_order(users, times)
    users, items = users[order], items[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    result = dict(
        users=[str(users[s]) for s in starts],
        sequences=[items[s:e] for s, e in zip(starts, ends)],
        num_interactions=int(len(users)))
    _CACHE.clear()  # one file at a time: train/val/test datasets of one config share it
    _CACHE[key] = result
    return result


def _left_pad(ids: np.ndarray, length: int) -> torch.Tensor:
    # numpy first, one tensor at the end: a sample costs microseconds, not tens of them
    out = np.zeros(length, dtype=np.int64)
    ids = ids[-length:]
    if len(ids):
        out[length - len(ids):] = ids
    return torch.from_numpy(out)


@DATASETS.register_module()
class LeaveOneOutSequenceDataset(BaseDataset):
    """Per-user item sequences with a leave-one-out split (see the module docstring).

    Args:
        ann_file: RecBole atomic ``.inter`` file; empty or ``None`` reads MovieLens-100K from the
            installed ``recbole`` wheel (:func:`ml100k_path`).
        split: ``'train'``, ``'val'`` or ``'test'``.
        max_len: History length ``L`` (positions of the model).
        user_core, item_core: k-core filtering (0 = off).
        min_rating: keep interactions with ``rating >= min_rating`` (``None`` = all).
        drop_repeats: drop an item equal to the user's previous item.
        train_windows: ``'last'`` or ``'all'``; ``train_stride`` (default ``max_len``) for
            ``'all'``.
        num_train_negatives: negatives per training position (0: none; SASRec's BCE uses 1).
        num_eval_negatives: negatives per evaluated user (0: full ranking; 100 in the paper).
        eval_negative_distribution: ``'uniform'`` or ``'popularity'`` (training counts).
        seed: seed of the evaluation negatives.
        unseen_targets: ``'rank'`` (default): items that occur only as validation/test items get
            ids after the training items and every user is evaluated; ``'drop'``: users whose
            held-out item never occurs in training are not evaluated (counted).
        expected_num_items: if given, raise unless the training sequences hold exactly this
            many items (configs repeat the model's ``num_items`` here, so a filter change that
            alters the item count fails loudly instead of scoring untrained embeddings).
        user_field, item_field, time_field, rating_field: column names in the file header.

    Samples are dicts of tensors: ``seq`` ``[L]`` and, for training, ``target`` ``[L]`` (0 = no
    loss) and ``negatives`` ``[L, k]``; for evaluation ``target`` (item id), ``seen`` (ids of the
    history, untruncated) and ``negatives`` ``[N]``.  ``metainfo`` holds ``num_items``,
    ``num_users``, the id maps (``item_map``/``user_map`` as :meth:`IdMap.to_dict`) and ``stats``.
    """

    def __init__(self,
                 ann_file: Optional[str] = '',
                 split: str = 'train',
                 max_len: int = 50,
                 user_core: int = 0,
                 item_core: int = 0,
                 min_rating: Optional[float] = None,
                 drop_repeats: bool = False,
                 train_windows: str = 'last',
                 train_stride: Optional[int] = None,
                 num_train_negatives: int = 0,
                 num_eval_negatives: int = 0,
                 eval_negative_distribution: str = 'uniform',
                 seed: int = 0,
                 unseen_targets: str = 'rank',
                 expected_num_items: Optional[int] = None,
                 user_field: str = 'user_id',
                 item_field: str = 'item_id',
                 time_field: str = 'timestamp',
                 rating_field: str = 'rating',
                 **kwargs) -> None:
        checks = [
            (split in _SPLITS, f'split={split!r}: expected one of {_SPLITS}'),
            (isinstance(max_len, int) and max_len >= 1, f'max_len={max_len!r}: must be >= 1'),
            (train_windows
             in ('last', 'all'), f"train_windows={train_windows!r}: expected 'last' or 'all'"),
            (train_stride is None
             or (isinstance(train_stride, int) and 1 <= train_stride <= max_len),
             f'train_stride={train_stride!r}: must be in [1, max_len={max_len}]'),
            (num_train_negatives >= 0, f'num_train_negatives={num_train_negatives!r} < 0'),
            (num_eval_negatives >= 0, f'num_eval_negatives={num_eval_negatives!r} < 0'),
            (unseen_targets
             in ('rank', 'drop'), f"unseen_targets={unseen_targets!r}: expected 'rank' or 'drop'"),
            (eval_negative_distribution in ('uniform', 'popularity'),
             f'eval_negative_distribution={eval_negative_distribution!r}: expected '
             "'uniform' or 'popularity'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f'LeaveOneOutSequenceDataset: {message}')
        self.split = split
        self.max_len = max_len
        self.filter_args = dict(
            user_field=user_field,
            item_field=item_field,
            time_field=time_field,
            rating_field=rating_field,
            min_rating=min_rating,
            user_core=user_core,
            item_core=item_core,
            drop_repeats=drop_repeats)
        self.train_windows = train_windows
        self.train_stride = train_stride or max_len
        self.num_train_negatives = num_train_negatives
        self.num_eval_negatives = num_eval_negatives
        self.eval_negative_distribution = eval_negative_distribution
        self.seed = seed
        self.expected_num_items = expected_num_items
        self.unseen_targets = unseen_targets
        self._user_train_items: List[np.ndarray] = []
        self._item_counts = np.zeros(1, dtype=np.int64)
        kwargs.setdefault('test_mode', split != 'train')
        # serialising costs a full gc.collect() per dataset; the lists are small numpy arrays
        kwargs.setdefault('serialize_data', False)
        super().__init__(ann_file=ann_file or '', **kwargs)

    # ------------------------------------------------------------------ building
    def load_data_list(self) -> List[dict]:
        path = self.ann_file or ml100k_path()
        raw = leave_one_out_sequences(path, **self.filter_args)
        users, sequences = raw['users'], raw['sequences']
        # Training part of each user: everything but the last two items (all of it below 3).
        train_parts = [s[:-2] if len(s) >= 3 else s for s in sequences]
        # training items first (ids 1..n_train, the same in both modes), then with 'rank' the
        # items that occur only as validation/test items
        item_map = IdMap.fit(
            np.concatenate(train_parts +
                           (list(sequences) if self.unseen_targets == 'rank' else [])))
        num_train_items = len(IdMap.fit(np.concatenate(train_parts)))
        user_map = IdMap(users)
        num_items = len(item_map)
        if self.expected_num_items is not None and num_items != self.expected_num_items:
            raise ValueError(
                f'LeaveOneOutSequenceDataset: {path} gives {num_items} training items after '
                f'filtering, the config expects expected_num_items={self.expected_num_items}; '
                f'set the model\'s num_items (and expected_num_items) to {num_items}')
        stats = dict(
            num_interactions=raw['num_interactions'],
            num_users=len(users),
            num_items=num_items,
            num_train_items=num_train_items,
            unseen_targets=self.unseen_targets,
            users_too_short=sum(len(s) < 3 for s in sequences),
            val_targets_unseen=0,
            test_targets_unseen=0,
            val_targets_dropped=0,
            test_targets_dropped=0,
            history_items_unseen=0)
        train_ids = [item_map.encode(p) for p in train_parts]
        self._user_train_items = [np.unique(t) for t in train_ids]
        counts = np.bincount(
            np.concatenate(train_ids + [np.zeros(0, np.int64)]), minlength=num_items + 1)
        self._item_counts = counts.astype(np.int64)
        data_list: List[dict] = []
        # seconds to a minute for large logs (one negative draw over all items per user)
        desc = f'LeaveOneOutSequenceDataset {self.split}: users'
        if self.split == 'train':
            for u, ids in enumerate(track(train_ids, desc)):
                data_list.extend(self._train_windows(u, ids))
        else:
            rng = np.random.default_rng(self.seed + (0 if self.split == 'val' else 1))
            for u, seq in enumerate(track(sequences, desc)):
                if len(seq) < 3:
                    continue
                pos = len(seq) - (2 if self.split == 'val' else 1)
                target = int(item_map.encode([seq[pos]], allow_unknown=True)[0])
                if target == 0 or target > num_train_items:
                    stats[f'{self.split}_targets_unseen'] += 1  # 'rank' scores it all the same
                if target == 0:
                    stats[f'{self.split}_targets_dropped'] += 1
                    continue
                history = item_map.encode(seq[:pos], allow_unknown=True)
                stats['history_items_unseen'] += int((history == 0).sum())
                history = history[history > 0]
                info = dict(user=u, history=history, target=target)
                if self.num_eval_negatives:
                    interacted = np.unique(item_map.encode(seq, allow_unknown=True))
                    info['negatives'] = self._eval_negatives(rng, interacted, counts, u)
                data_list.append(info)
        stats['num_samples'] = len(data_list)
        population = None
        if self.split != 'train':  # what RankingMetric logs: who is scored, who is not and why
            dropped = {
                'fewer than 3 interactions (training only)':
                stats['users_too_short'],
                "held-out item unseen in training (unseen_targets='drop')":
                stats[f'{self.split}_targets_dropped']
            }
            population = dict(unit='users', scored=len(data_list), dropped=dropped)
        self._metainfo.update(
            num_items=num_items,
            num_users=len(users),
            max_len=self.max_len,
            item_map=item_map.to_dict(),
            user_map=user_map.to_dict(),
            stats=stats,
            eval_population=population,
            data_file=path)
        if not data_list:
            raise ValueError(f'LeaveOneOutSequenceDataset: {path} gives no {self.split} sample '
                             f'(stats: {stats})')
        return data_list

    def _train_windows(self, user: int, ids: np.ndarray) -> List[dict]:
        inputs, targets = ids[:-1], ids[1:]  # pair j: item j predicts item j + 1
        num_pairs, length = len(inputs), self.max_len
        if num_pairs == 0:
            return []
        if self.train_windows == 'last':
            return [dict(user=user, seq=inputs[-length:], target=targets[-length:])]
        windows, end, stride = [], num_pairs, self.train_stride
        while end > 0:
            start = max(0, end - length)
            target = targets[start:end].copy()
            target[:max(0, end - stride - start)] = 0  # older targets belong to an earlier window
            windows.append(dict(user=user, seq=inputs[start:end], target=target))
            end -= stride
        return windows[::-1]

    def _eval_negatives(self, rng: np.random.Generator, interacted: np.ndarray, counts: np.ndarray,
                        user: int) -> np.ndarray:
        allowed = np.ones(len(counts), dtype=bool)
        allowed[0] = False
        allowed[interacted] = False
        candidates = np.flatnonzero(allowed)
        n = self.num_eval_negatives
        if self.eval_negative_distribution == 'popularity':
            weights = counts[candidates].astype(np.float64)
            candidates, weights = candidates[weights > 0], weights[weights > 0]
            p = weights / weights.sum() if len(weights) else None
        else:
            p = None
        if len(candidates) < n:
            raise ValueError(f'LeaveOneOutSequenceDataset: user #{user} has only '
                             f'{len(candidates)} items to draw {n} evaluation negatives from '
                             '(lower num_eval_negatives)')
        return np.sort(rng.choice(candidates, size=n, replace=False, p=p))

    # ------------------------------------------------------------------ access
    @property
    def item_counts(self) -> np.ndarray:
        """Training popularity: int64 ``(num_items + 1,)``, entry ``i`` = interactions with item
        id ``i`` in the training part of the sequences (each user's items but the last two; all
        of a user with fewer than 3), 0 for the padding id and for evaluation-only items.  The
        same in every split (and the meaning of :class:`SessionDataset`'s ``item_counts``)."""
        if not self._fully_initialized:
            self.full_init()
        return self._item_counts

    def get_data_info(self, idx: int) -> dict:
        if self.serialize_data:
            return super().get_data_info(idx)
        return self.data_list[idx]  # read-only here: no per-sample deep copy

    def prepare_data(self, idx: int) -> Dict[str, Any]:
        info = self.get_data_info(idx)
        if self.split == 'train':
            sample = dict(
                user=info['user'],
                seq=_left_pad(info['seq'], self.max_len),
                target=_left_pad(info['target'], self.max_len))
            if self.num_train_negatives:
                sample['negatives'] = self._train_negatives(info)
            return sample
        sample = dict(
            user=info['user'],
            seq=_left_pad(info['history'], self.max_len),
            target=info['target'],
            seen=torch.from_numpy(np.unique(info['history'])))
        if 'negatives' in info:
            sample['negatives'] = torch.from_numpy(info['negatives'])
        return sample

    def _train_negatives(self, info: dict) -> torch.Tensor:
        """``[L, k]`` items outside the user's training items, redrawn at every access; 0 at
        padded positions."""
        num_items = self._metainfo['num_items']  # not .metainfo: that deep-copies the id maps
        exclude = self._user_train_items[info['user']]  # sorted (np.unique)
        if len(exclude) >= num_items:
            raise ValueError(f'LeaveOneOutSequenceDataset: user #{info["user"]} interacted '
                             'with every item; no negative can be drawn')
        n = min(len(info['seq']), self.max_len)  # positions that carry a target
        neg = np.random.randint(1, num_items + 1, size=(n, self.num_train_negatives))
        # membership by binary search in the sorted items: much cheaper than np.isin for the
        # few dozen items of a sample
        bad = exclude[np.minimum(np.searchsorted(exclude, neg), len(exclude) - 1)] == neg \
            if len(exclude) else np.zeros(neg.shape, dtype=bool)
        while bad.any():
            neg[bad] = np.random.randint(1, num_items + 1, size=int(bad.sum()))
            bad = exclude[np.minimum(np.searchsorted(exclude, neg), len(exclude) - 1)] == neg
        out = np.zeros((self.max_len, self.num_train_negatives), dtype=np.int64)
        out[self.max_len - n:] = neg
        return torch.from_numpy(out)


@FUNCTIONS.register_module()
def sequence_collate(batch: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Batch :class:`LeaveOneOutSequenceDataset` samples as ``{'inputs': {...}}`` for
    ``model(**data)``: tensors of equal shape and ints are stacked, ragged tensors (``seen``)
    stay lists.  Use as ``collate_fn=dict(type='mmext.sequence_collate')``."""
    if not batch:
        raise ValueError('sequence_collate: empty batch')
    inputs: Dict[str, Any] = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        if isinstance(values[0], (int, np.integer)):
            inputs[key] = torch.tensor(values, dtype=torch.long)
        elif isinstance(values[0], torch.Tensor) and len({v.shape for v in values}) == 1 \
                and key != 'seen':
            inputs[key] = torch.stack(values)
        else:
            inputs[key] = values
    return dict(inputs=inputs)
