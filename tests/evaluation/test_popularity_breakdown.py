"""Popularity buckets and the per-bucket ranking metrics (mmext/evaluation/popularity_breakdown.py).

Bucket bounds worked out by hand for both schemes; the recorder keeps exactly RankingMetric's
(greater, ties) per event, with the target's item id (full ranking and sampled candidates); the
overall breakdown equals RankingMetric's numbers and the buckets average back to it.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator

from mmext.evaluation.metrics.ranking import RankingMetric
from mmext.evaluation.popularity_breakdown import (RankRecorder, popularity_breakdown,
                                                   popularity_buckets)

ROOT = Path(__file__).resolve().parents[2]


def test_quantile_buckets_by_hand():
    pop = np.array([8, 0, 34, 1, 2, 13, 3, 21, 5, 0])
    # sorted: 0 0 1 2 3 5 8 13 21 34; 'lower' quantiles at 0, .2, .4, .6, .8 pick sorted[0], [1],
    # [3], [5], [7] = 0, 0, 2, 5, 13 -> the two zeros merge: 4 buckets
    ranges, bucket = popularity_buckets(pop, 5, 'quantile')
    assert ranges.tolist() == [[0, 1], [2, 4], [5, 12], [13, 34]]
    assert bucket.tolist() == [2, 0, 3, 0, 1, 3, 1, 3, 2, 0]
    assert np.bincount(bucket).tolist() == [3, 2, 2, 3]
    one, only = popularity_buckets(pop, 1, 'quantile')
    assert one.tolist() == [[0, 34]] and set(only.tolist()) == {0}
    same, _ = popularity_buckets(np.full(7, 4), 3)
    assert same.tolist() == [[4, 4]]


def test_log2_buckets_by_hand():
    pop = np.array([0, 1, 2, 3, 4, 7, 8, 100])
    ranges, bucket = popularity_buckets(pop, scheme='log2')
    # [16, 31] and [32, 63] are empty and left out
    assert ranges.tolist() == [[0, 0], [1, 1], [2, 3], [4, 7], [8, 15], [64, 100]]
    assert bucket.tolist() == [0, 1, 2, 2, 3, 3, 4, 5]
    zeros, _ = popularity_buckets(np.zeros(3), scheme='log2')
    assert zeros.tolist() == [[0, 0]]


def test_bucket_errors():
    with pytest.raises(ValueError, match='non-negative integers'):
        popularity_buckets(np.array([1, -1]))
    with pytest.raises(ValueError, match='non-negative integers'):
        popularity_buckets(np.array([1.5]))
    with pytest.raises(ValueError, match='scheme'):
        popularity_buckets(np.array([1]), scheme='linear')
    with pytest.raises(ValueError, match='no events'):
        popularity_buckets(np.array([]))


def _events(rng, num_events=200, num_ids=30):
    """Model-like outputs with many ties (integer scores) and seen items to exclude."""
    samples = []
    for _ in range(num_events):
        scores = torch.from_numpy(rng.integers(0, 6, size=num_ids).astype(np.float32))
        target = int(rng.integers(1, num_ids))
        exclude = torch.from_numpy(rng.choice(np.arange(1, num_ids), size=4, replace=False))
        samples.append(
            dict(scores=scores, target=target, exclude=exclude, invalid=torch.tensor([0])))
    return samples


@pytest.mark.parametrize('tie_policy,exclude_seen', [('average', True), ('pessimistic', False)])
def test_recorder_matches_ranking_metric(tie_policy, exclude_seen):
    rng = np.random.default_rng(0)
    samples = _events(rng)
    kwargs = dict(
        topk=(5, 10),
        metrics=('hr', 'ndcg', 'mrr'),
        tie_policy=tie_policy,
        exclude_seen=exclude_seen)
    metric, recorder = RankingMetric(**kwargs), RankRecorder(num_ids=30, **kwargs)
    evaluator = Evaluator([metric, recorder])  # side by side, as the tool runs them
    for start in range(0, len(samples), 64):
        evaluator.process(samples[start:start + 64], dict(inputs={}))
    reported = evaluator.evaluate(len(samples))
    assert set(reported) == {'hr@5', 'hr@10', 'ndcg@5', 'ndcg@10', 'mrr@5', 'mrr@10',
                             'num_events'}  # the recorder adds no key
    records = recorder.records
    assert records.shape == (200, 3)
    assert records[:, 2].tolist() == [s['target'] for s in samples]  # full ranking: index = id
    item_counts = rng.integers(0, 50, size=30)
    result = popularity_breakdown(
        records, item_counts, (5, 10), ('hr', 'ndcg', 'mrr'), tie_policy, num_buckets=4)
    for key, value in reported.items():
        assert result['overall'][key] == pytest.approx(value, abs=1e-12)
    sizes = np.array([b['num_events'] for b in result['buckets']])
    assert sizes.sum() == 200
    pop = item_counts[records[:, 2]]
    for b in result['buckets']:  # each bucket holds exactly the events in its range
        assert b['num_events'] == int(((pop >= b['low']) & (pop <= b['high'])).sum())
    for key in ('hr@10', 'ndcg@5', 'mrr@10'):
        weighted = sum(b[key] * b['num_events'] for b in result['buckets']) / 200
        assert weighted == pytest.approx(result['overall'][key], abs=1e-12)
    assert 0 < result['overall']['hr@10'] < 1


def test_recorder_sampled_candidates_take_ids_from_the_batch():
    recorder = RankRecorder(num_ids=100, topk=(1, ), metrics=('hr', ))
    samples = [
        dict(scores=torch.tensor([3.0, 1.0, 2.0]), target=0, exclude=torch.zeros(0).long()),
        dict(scores=torch.tensor([0.0, 1.0, 2.0]), target=0, exclude=torch.zeros(0).long())
    ]
    recorder.process(dict(inputs=dict(target=torch.tensor([42, 7]))), samples)
    recorder.records = None
    assert recorder.compute_metrics(recorder.results) == {}
    assert recorder.records.tolist() == [[0, 0, 42], [2, 0, 7]]
    with pytest.raises(ValueError, match='sampled candidates'):
        RankRecorder(num_ids=100).process(dict(inputs={}), samples)


def test_lean_core_modules_load_no_toolbox():
    """The analysis modules in mmext/evaluation import neither mmcv nor mmdet/mmseg/mmpretrain."""
    code = ('import sys\n'
            'import mmext.evaluation.detection_confusion, mmext.evaluation.popularity_breakdown\n'
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('mmcv', 'mmdet', 'mmseg', 'mmpretrain'))\n"
            'assert not loaded, loaded\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
