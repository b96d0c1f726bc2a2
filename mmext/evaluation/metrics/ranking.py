"""Top-K ranking metrics for next-item recommendation: Recall/HR, MRR and NDCG at K.

One evaluated event has one relevant item (the next item of a session, the held-out item of a
user).  Its 0-based rank ``r`` is the number of valid candidates scored above it, so

* ``recall@K = hr@K = [r < K]``        (hit in the top K; with one relevant item they coincide —
  ``r < K`` with a 0-based rank, i.e. "1-based rank ≤ K"; GRU4Rec's code counts the same way);
* ``mrr@K = [r < K] / (r + 1)``        (reciprocal rank, cut at K);
* ``ndcg@K = [r < K] / log2(r + 2)``   (Järvelin & Kekäläinen, TOIS 2002; the ideal DCG is 1).

**Ties.**  Candidates with exactly the target's score make ``r`` ambiguous: with ``g`` candidates
strictly above and ``e`` tied, the rank can be anything in ``g .. g + e``.

* ``'optimistic'``: ``r = g`` (target placed before every tie);
* ``'pessimistic'``: ``r = g + e`` (after every tie; GRU4Rec's official code counts this way);
* ``'average'`` (default): the metric's *expected value* when ties are broken uniformly at random,
  ``mean(m(r) for r in g .. g + e)`` — not the metric of the mean rank.  A model scoring all items
  equally thus gets ``recall@K = K / C`` instead of 1 (optimistic) or 0 (pessimistic).

**Input contract** (shared by mmext's recommenders): ``forward(mode='predict')`` returns a list
with one dict per evaluated event, and mmengine's Evaluator hands that list to :meth:`process`
as its ``data_samples`` argument (``data_batch`` is ignored)::

    {'scores': FloatTensor[C],     # full ranking: C = number of item ids, index = item id;
                                   # sampled: C = 1 + N negatives
     'target': int,                # index of the relevant item in ``scores``
     'exclude': LongTensor[k]}     # indices not to rank (already-seen items, padding id 0)

``exclude`` is applied when ``exclude_seen=True``; an optional ``'invalid'`` LongTensor is always
excluded (for indices that are never valid candidates).  The target itself is never excluded,
even when listed (a repeated item stays rankable).  A NaN score raises.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmext.registry import METRICS

__all__ = ['RankingMetric', 'rank_bounds', 'ranking_metric_values']

_METRICS = ('recall', 'hr', 'mrr', 'ndcg')
_TIE_POLICIES = ('average', 'optimistic', 'pessimistic')


def _gain(name: str, k: int) -> np.ndarray:
    """Metric value of each 0-based rank r < k (0 beyond k)."""
    r = np.arange(k, dtype=np.float64)
    if name in ('recall', 'hr'):
        return np.ones(k)
    if name == 'mrr':
        return 1.0 / (r + 1.0)
    return 1.0 / np.log2(r + 2.0)


def ranking_metric_values(greater: np.ndarray,
                          ties: np.ndarray,
                          name: str,
                          k: int,
                          tie_policy: str = 'average') -> np.ndarray:
    """Per-event value of metric ``name``@``k`` from the counts of candidates scored strictly
    above (``greater``) and equal to (``ties``) the target."""
    greater = np.asarray(greater, dtype=np.int64)
    ties = np.asarray(ties, dtype=np.int64)
    gain = _gain(name, k)
    if tie_policy == 'optimistic':
        rank = greater
    elif tie_policy == 'pessimistic':
        rank = greater + ties
    elif tie_policy == 'average':
        # Sum of gain over ranks g..g+e via prefix sums (gain is 0 from rank k on).
        cum = np.concatenate([[0.0], np.cumsum(gain)])
        lo = np.minimum(greater, k)
        hi = np.minimum(greater + ties + 1, k)
        return (cum[hi] - cum[lo]) / (ties + 1)
    else:
        raise ValueError(f'tie_policy must be one of {_TIE_POLICIES}, got {tie_policy!r}')
    out = np.zeros(len(rank))
    hit = rank < k
    out[hit] = gain[rank[hit]]
    return out


def rank_bounds(scores: torch.Tensor,
                target: int,
                exclude: Optional[torch.Tensor] = None,
                where: str = 'sample') -> Tuple[int, int]:
    """``(greater, ties)``: valid candidates scored strictly above / equal to the target."""
    if scores.dim() != 1 or scores.numel() == 0:
        raise ValueError(f'{where}: scores must be a non-empty 1-D tensor, got shape '
                         f'{tuple(scores.shape)}')
    if not 0 <= target < scores.numel():
        raise ValueError(f'{where}: target index {target} outside scores of length '
                         f'{scores.numel()}')
    nan = torch.isnan(scores)
    if bool(nan.any()):
        raise ValueError(f'{where}: scores hold NaN at indices '
                         f'{torch.nonzero(nan).flatten()[:5].tolist()}')
    valid = torch.ones_like(scores, dtype=torch.bool)
    if exclude is not None and exclude.numel():
        exclude = torch.as_tensor(exclude, dtype=torch.long, device=scores.device).flatten()
        if bool(((exclude < 0) | (exclude >= scores.numel())).any()):
            raise ValueError(f'{where}: exclude indices must lie in [0, {scores.numel()}), got '
                             f'min {int(exclude.min())}, max {int(exclude.max())}')
        valid[exclude] = False
    valid[target] = False  # the target is never its own competitor, nor ever excluded
    t = scores[target]
    greater = int(((scores > t) & valid).sum())
    ties = int(((scores == t) & valid).sum())
    return greater, ties


@METRICS.register_module()
class RankingMetric(BaseMetric):
    """Recall@K, HR@K, MRR@K and NDCG@K for one relevant item per event (see module docstring).

    Args:
        topk: cut-offs K.
        metrics: any of ``'recall'``, ``'hr'``, ``'mrr'``, ``'ndcg'``.
        tie_policy: ``'average'`` (expected value under random tie-breaking), ``'optimistic'`` or
            ``'pessimistic'``.
        exclude_seen: drop each event's ``'exclude'`` indices from the ranking.
        collect_device, prefix: as :class:`mmengine.evaluator.BaseMetric`; without a prefix the
            keys are bare (``recall@20``), otherwise ``<prefix>/recall@20``.

    :meth:`compute_metrics` returns the means over events of every ``<metric>@<K>``, and
    ``num_events``.  Its log line also says how many users/events the dataset scored and how
    many it dropped and why (``dataset_meta['eval_population']``, which mmext's recsys datasets
    set; mmengine's loops hand the dataset's ``metainfo`` to the metric as ``dataset_meta``).

    In configs, put it in a list: ``val_evaluator = [dict(type='mmext.RankingMetric', ...)]``.
    mmengine reads a bare dict that has a ``metrics`` key as an ``Evaluator`` config.
    """

    default_prefix: Optional[str] = ''

    def __init__(self,
                 topk: Sequence[int] = (10, 20),
                 metrics: Sequence[str] = ('recall', 'hr', 'mrr', 'ndcg'),
                 tie_policy: str = 'average',
                 exclude_seen: bool = True,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not topk or any(not isinstance(k, int) or k < 1 for k in topk):
            raise ValueError(f'topk must be positive integers, got {topk}')
        metrics = (metrics, ) if isinstance(metrics, str) else tuple(metrics)
        unknown = [m for m in metrics if m not in _METRICS]
        if unknown or not metrics:
            raise ValueError(f'unknown metric(s) {unknown}; choose from {_METRICS}')
        if tie_policy not in _TIE_POLICIES:
            raise ValueError(f'tie_policy must be one of {_TIE_POLICIES}, got {tie_policy!r}')
        self.topk, self.metrics = topk, metrics
        self.tie_policy, self.exclude_seen = tie_policy, exclude_seen

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Store ``(greater, ties)`` of each event; ``data_samples`` is the model's output list."""
        for i, sample in enumerate(data_samples):
            if not isinstance(sample, dict) or 'scores' not in sample or 'target' not in sample:
                raise ValueError(f'RankingMetric expects dicts with "scores" and "target" (and '
                                 f'optionally "exclude"), got {type(sample).__name__} '
                                 f'{list(sample) if isinstance(sample, dict) else ""}')
            scores = torch.as_tensor(sample['scores']).detach().flatten().float()
            target = int(sample['target'])
            parts = []
            if self.exclude_seen and sample.get('exclude') is not None:
                parts.append(torch.as_tensor(sample['exclude']).flatten())
            if sample.get('invalid') is not None:
                parts.append(torch.as_tensor(sample['invalid']).flatten())
            exclude = torch.cat([p.long().cpu() for p in parts]) if parts else None
            self.results.append(
                rank_bounds(
                    scores.cpu(), target, exclude, where=f'RankingMetric sample {i} of this batch'))

    def compute_metrics(self, results: List[Tuple[int, int]]) -> Dict[str, float]:
        if not results:
            raise ValueError('RankingMetric received no events to evaluate')
        counts = np.asarray(results, dtype=np.int64).reshape(-1, 2)
        out: Dict[str, float] = {}
        for name in self.metrics:
            for k in self.topk:
                out[f'{name}@{k}'] = float(
                    ranking_metric_values(counts[:, 0], counts[:, 1], name, k,
                                          self.tie_policy).mean())
        out['num_events'] = float(len(counts))
        print_log(
            f'RankingMetric: {len(counts)} events scored{self._population()}, tie policy '
            f'{self.tie_policy}, {counts[:, 1].astype(bool).mean():.2%} of targets tied with '
            'another item',
            logger='current')
        return out

    def _population(self) -> str:
        """What the dataset left out of evaluation, from ``dataset_meta['eval_population']``
        (``{'unit', 'scored', 'dropped': {reason: count}}``, set by mmext's recsys datasets)."""
        population = (self.dataset_meta or {}).get('eval_population')
        if not population:
            return ' (the dataset reports no evaluation population)'
        dropped = population.get('dropped', {})
        total = sum(dropped.values())
        reasons = '; '.join(f'{n} {reason}' for reason, n in dropped.items() if n)
        return (f" (dataset: {population['scored']} {population['unit']} scored, {total} "
                f"dropped{': ' + reasons if reasons else ''})")
