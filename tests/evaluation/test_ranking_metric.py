"""RankingMetric against brute force over explicit tie-breaking permutations."""
import itertools
import math

import numpy as np
import pytest
import torch

from mmext.evaluation.metrics.ranking import RankingMetric
from mmext.registry import METRICS


def brute(scores, target, exclude, k, name, policy):
    """Rank every tie-broken order explicitly; average over the target's possible positions."""
    valid = [i for i in range(len(scores)) if i == target or i not in set(exclude)]
    t = scores[target]
    above = [i for i in valid if scores[i] > t]
    tied = [i for i in valid if scores[i] == t and i != target]
    positions = range(len(above), len(above) + len(tied) + 1)  # 0-based ranks possible
    if policy == 'optimistic':
        positions = [len(above)]
    elif policy == 'pessimistic':
        positions = [len(above) + len(tied)]

    def value(r):
        if r + 1 > k:  # 1-based rank must be <= k
            return 0.0
        return {
            'recall': 1.0,
            'hr': 1.0,
            'mrr': 1.0 / (r + 1),
            'ndcg': 1.0 / math.log2(r + 2)
        }[name]

    # For 'average', enumerate the orderings of the tied block: each puts the target at one
    # position with equal frequency, so the mean over orderings is the mean over positions.
    if policy == 'average':
        block = tied + [target]
        vals = [value(len(above) + perm.index(target))
                for perm in itertools.permutations(block)] if len(block) <= 6 else \
            [value(r) for r in positions]
        return sum(vals) / len(vals)
    return value(positions[0])


@pytest.mark.parametrize('policy', ['average', 'optimistic', 'pessimistic'])
def test_metric_matches_brute_force_with_ties(policy):
    rng = np.random.default_rng(1)
    metric = METRICS.build(dict(type='mmext.RankingMetric', topk=(1, 3, 5), tie_policy=policy))
    samples, expected = [], {
        f'{m}@{k}': []
        for m in ('recall', 'hr', 'mrr', 'ndcg')
        for k in (1, 3, 5)
    }
    for _ in range(60):
        c = int(rng.integers(3, 12))
        scores = rng.integers(0, 4, c).astype(np.float32)  # many ties on purpose
        target = int(rng.integers(0, c))
        exclude = rng.choice(c, size=int(rng.integers(0, c // 2 + 1)), replace=False)
        samples.append(
            dict(
                scores=torch.from_numpy(scores),
                target=target,
                exclude=torch.from_numpy(exclude).long()))
        for key in expected:
            m, k = key.split('@')
            expected[key].append(
                brute(scores.tolist(), target, exclude.tolist(), int(k), m, policy))
    metric.process({}, samples[:25])
    metric.process({}, samples[25:])
    got = metric.compute_metrics(metric.results)
    assert got['num_events'] == 60
    for key, vals in expected.items():
        assert got[key] == pytest.approx(np.mean(vals), abs=1e-12), key


def test_recall_at_k_counts_rank_k_as_hit():
    # Target is the 20th best of 30 (19 above it): a hit for @20, a miss for @19.
    scores = torch.arange(30, 0, -1).float()
    metric = RankingMetric(topk=(19, 20), metrics=('recall', 'mrr', 'ndcg'))
    metric.process(None, [dict(scores=scores, target=19, exclude=torch.zeros(0).long())])
    res = metric.compute_metrics(metric.results)
    assert res['recall@20'] == 1.0 and res['recall@19'] == 0.0
    assert res['mrr@20'] == pytest.approx(1 / 20)
    assert res['ndcg@20'] == pytest.approx(1 / math.log2(21))


def test_all_equal_scores_average_is_k_over_c():
    metric = RankingMetric(topk=(5, ), metrics=('recall', ))
    metric.process(None, [dict(scores=torch.zeros(50), target=7, exclude=torch.tensor([]))])
    assert metric.compute_metrics(metric.results)['recall@5'] == pytest.approx(5 / 50)


def test_exclusion_seen_target_and_invalid():
    scores = torch.tensor([9.0, 5.0, 4.0, 3.0])
    sample = dict(scores=scores, target=3, exclude=torch.tensor([0, 1, 3]))
    on = RankingMetric(topk=(1, ), metrics=('hr', ))
    on.process(None, [sample])
    assert on.results == [(1, 0)] and on.compute_metrics(on.results)['hr@1'] == 0.0
    # 0 and 1 excluded, the target (listed too) stays: only item 2 is above it.
    off = RankingMetric(topk=(1, ), metrics=('hr', ), exclude_seen=False)
    off.process(None, [dict(sample, invalid=torch.tensor([0]))])
    assert off.results == [(2, 0)]


def test_nan_and_bad_input_raise():
    metric = RankingMetric()
    with pytest.raises(ValueError, match='NaN at indices \\[2\\]'):
        metric.process(None, [dict(scores=torch.tensor([1.0, 2.0, float('nan')]), target=0)])
    with pytest.raises(ValueError, match='target index 5'):
        metric.process(None, [dict(scores=torch.zeros(3), target=5)])
    with pytest.raises(ValueError, match='exclude indices'):
        metric.process(None, [dict(scores=torch.zeros(3), target=0, exclude=torch.tensor([3]))])
    with pytest.raises(ValueError, match='tie_policy'):
        RankingMetric(tie_policy='random')
    with pytest.raises(ValueError, match='unknown metric'):
        RankingMetric(metrics=('auc', ))


def test_log_line_reports_the_evaluation_population(monkeypatch):
    """Every evaluation says how many users/events were scored and how many the dataset
    dropped, and why (issue #21: dropped users used to show only in metainfo['stats'])."""
    import mmext.evaluation.metrics.ranking as ranking
    lines = []
    monkeypatch.setattr(ranking, 'print_log', lambda msg, **kw: lines.append(msg))
    metric = RankingMetric(topk=(1, ))
    metric.dataset_meta = dict(
        eval_population=dict(
            unit='users', scored=2, dropped={
                'too short': 0,
                'held-out item unseen': 3
            }))
    metric.process(None, [dict(scores=torch.tensor([0., 1., 2.]), target=2)] * 2)
    metric.compute_metrics(metric.results)
    assert '2 events scored (dataset: 2 users scored, 3 dropped: 3 held-out item unseen)' \
        in lines[-1]
    metric.dataset_meta = None
    metric.compute_metrics(metric.results)
    assert 'reports no evaluation population' in lines[-1]
