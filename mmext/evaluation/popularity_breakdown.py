"""Ranking metrics broken down by the training popularity of the target item.

A recommender's HR@K is an average over evaluated events (users, for leave-one-out); popular
targets are easy, long-tail targets hard, and the average hides how much of it comes from
where.  Here each event is put in a bucket by its target's **training popularity** (the number
of training interactions with the item: ``dataset.item_counts[target]`` of mmext's recsys
datasets) and the metrics are averaged per bucket.

**Same ranking as the test metric.**  :class:`RankRecorder` *is* a :class:`RankingMetric`: its
``process`` runs ``RankingMetric.process`` (the same scores, exclusions — ``exclude_seen`` and
``invalid`` — and the same ``(greater, ties)`` counts per event), then remembers each event's
target item id beside them.  Per-event values come from :func:`ranking_metric_values` with the
same tie policy, so the event-weighted mean over the buckets is exactly the number
``tools/test.py`` reports.

**Buckets** (:func:`popularity_buckets`), by integer popularity ranges, never splitting one
popularity value over two buckets:

* ``'quantile'``: ``num_buckets`` buckets with about as many events each; bucket ``b`` starts
  at the ``b / num_buckets`` quantile of the events' target popularity (``method='lower'``, so
  bounds are observed values).  Bounds that coincide (many events with one popularity) merge,
  so fewer buckets may come out, and sizes are equal only up to such ties;
* ``'log2'``: ``[0]``, ``[1]``, ``[2, 3]``, ``[4, 7]``, ... (powers of two, up to the largest
  popularity).

Empty buckets are left out.  Popularity 0 means the target never occurs in training (an
evaluation-only item, scored by its untrained embedding with ``unseen_targets='rank'``).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .metrics.ranking import RankingMetric, ranking_metric_values

__all__ = ['RankRecorder', 'popularity_buckets', 'popularity_breakdown']

_SCHEMES = ('quantile', 'log2')


class RankRecorder(RankingMetric):
    """A :class:`RankingMetric` that keeps, per event, ``(greater, ties, target item id)``
    instead of reporting means.  Not registered: the analysis tool appends it to a runner's
    test evaluator next to the config's own metrics.

    Args:
        num_ids: size of the item id space (``num_items + 1``).  An event whose ``scores`` has
            this length is a full ranking (index = item id, so the target index is the item);
            otherwise (sampled candidates) the item id is read from the batch's
            ``inputs['target']`` ``[B]``.
        **kwargs: as :class:`RankingMetric` (copy the config's ``topk``, ``tie_policy``,
            ``exclude_seen`` ...).

    After evaluation, :attr:`records` is an int64 array ``(N, 3)``: greater, ties, item id.
    """

    def __init__(self, num_ids: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_ids = int(num_ids)
        self.records: Optional[np.ndarray] = None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        start = len(self.results)
        super().process(data_batch, data_samples)  # appends (greater, ties) per event
        items = self._target_items(data_batch, data_samples)
        self.results[start:] = [(g, t, item) for (g, t), item in zip(self.results[start:], items)]

    def _target_items(self, data_batch, data_samples: Sequence[dict]) -> List[int]:
        if all(torch.as_tensor(s['scores']).numel() == self.num_ids for s in data_samples):
            return [int(s['target']) for s in data_samples]
        batch_target = None
        if isinstance(data_batch, dict) and isinstance(data_batch.get('inputs'), dict):
            batch_target = data_batch['inputs'].get('target')
        if not (isinstance(batch_target, torch.Tensor) and batch_target.dim() == 1
                and batch_target.numel() == len(data_samples)):
            raise ValueError(
                'RankRecorder: sampled candidates (scores shorter than the id space of '
                f'{self.num_ids}) and no batch inputs["target"] [B] with one item id per event')
        return [int(t) for t in batch_target.tolist()]

    def compute_metrics(self, results: List[Tuple[int, int, int]]) -> Dict[str, float]:
        if not results:
            raise ValueError('RankRecorder received no events')
        self.records = np.asarray(results, dtype=np.int64).reshape(-1, 3)
        return {}  # the config's RankingMetric reports the means


def popularity_buckets(popularity: np.ndarray,
                       num_buckets: int = 5,
                       scheme: str = 'quantile') -> Tuple[np.ndarray, np.ndarray]:
    """Integer popularity ranges and the bucket of each event (module docstring).

    Args:
        popularity: ``(N,)`` non-negative integer popularity of each event's target.
        num_buckets: number of quantile buckets (at most; ignored by ``'log2'``).
        scheme: ``'quantile'`` or ``'log2'``.

    Returns:
        ``ranges`` ``(B, 2)`` int64, inclusive ``[low, high]`` of each non-empty bucket in
        increasing order, and ``bucket`` ``(N,)`` int64 in ``[0, B)``.
    """
    pop = np.asarray(popularity).reshape(-1)
    if pop.size == 0:
        raise ValueError('popularity_buckets: no events')
    if (pop < 0).any() or not np.array_equal(pop, np.round(pop)):
        raise ValueError('popularity_buckets: popularity must be non-negative integers')
    pop = pop.astype(np.int64)
    if scheme == 'quantile':
        if num_buckets < 1:
            raise ValueError(f'num_buckets must be >= 1, got {num_buckets}')
        lows = np.unique(np.quantile(pop, np.arange(num_buckets) / num_buckets, method='lower'))
    elif scheme == 'log2':
        top = int(pop.max())
        lows = np.array([0] + [2**p for p in range(max(top, 1).bit_length())], dtype=np.int64)
    else:
        raise ValueError(f'scheme must be one of {_SCHEMES}, got {scheme!r}')
    lows = lows.astype(np.int64)
    highs = np.append(lows[1:] - 1, max(int(pop.max()), int(lows[-1])))
    bucket = np.searchsorted(lows, pop, side='right') - 1
    used = np.unique(bucket)  # drop empty buckets, renumber the others
    ranges = np.stack([lows[used], highs[used]], axis=1)
    return ranges, np.searchsorted(used, bucket).astype(np.int64)


def popularity_breakdown(records: np.ndarray,
                         item_counts: np.ndarray,
                         topk: Sequence[int],
                         metrics: Sequence[str],
                         tie_policy: str = 'average',
                         num_buckets: int = 5,
                         scheme: str = 'quantile') -> Dict[str, object]:
    """Metric means per popularity bucket and overall.

    Args:
        records: ``(N, 3)`` greater, ties, target item id (:attr:`RankRecorder.records`).
        item_counts: ``(num_items + 1,)`` training interactions per item id.
        topk, metrics, tie_policy: as :class:`RankingMetric`.
        num_buckets, scheme: as :func:`popularity_buckets`.

    Returns:
        ``{'scheme', 'buckets': [{'low', 'high', 'num_events', '<metric>@<K>': mean, ...}],
        'overall': {'num_events', '<metric>@<K>': mean, ...}}``; ``overall`` equals the
        config's RankingMetric on the same events.
    """
    records = np.asarray(records, dtype=np.int64).reshape(-1, 3)
    item_counts = np.asarray(item_counts).reshape(-1)
    items = records[:, 2]
    if items.size and (items.min() < 0 or items.max() >= len(item_counts)):
        raise ValueError(f'target item ids outside [0, {len(item_counts)}) of item_counts')
    popularity = item_counts[items]
    ranges, bucket = popularity_buckets(popularity, num_buckets, scheme)
    values = {
        f'{name}@{k}': ranking_metric_values(records[:, 0], records[:, 1], name, k, tie_policy)
        for name in metrics
        for k in topk
    }
    buckets = []
    for b, (low, high) in enumerate(ranges):
        mask = bucket == b
        row: Dict[str, float] = dict(low=int(low), high=int(high), num_events=int(mask.sum()))
        row.update({key: float(v[mask].mean()) for key, v in values.items()})
        buckets.append(row)
    overall: Dict[str, float] = dict(num_events=int(len(records)))
    overall.update({key: float(v.mean()) for key, v in values.items()})
    return dict(scheme=scheme, buckets=buckets, overall=overall)
