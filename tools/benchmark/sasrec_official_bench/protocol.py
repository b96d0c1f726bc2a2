"""The common evaluation: each side scores the same tasks (:func:`.data.eval_tasks`) with its own
model, and returns, per task, how many candidates score strictly above (``greater``) and level
with (``ties``) the held-out item.  The metrics follow from those counts alone
(:func:`metrics_from_counts`, the formulas of :class:`mmext.RankingMetric`, ties averaged:
the expected value when ties are broken at random).

Two protocols:

* ``full``: every item ``1..n`` is a candidate (the padding id 0 is not), the user's history is
  not excluded (RecBole's protocol for sequential models and our configs' default);
* ``sampled``: the held-out item against the task's 100 negatives (the SASRec paper's protocol,
  which the official code evaluates on up to 10,000 random users; here on every user, with the
  same negatives on both sides).

Only numpy and torch are imported (the official venv runs this too).
"""
from typing import Callable, Dict

import numpy as np

__all__ = ['rank_counts', 'metrics_from_counts']

# scores of every item id for a batch of histories: ``[B, L]`` ids -> ``[B, n + 1]`` (column =
# item id in the file's numbering; column 0, padding, is ignored)
ScoreFn = Callable[[np.ndarray], 'object']


def rank_counts(score_fn: ScoreFn,
                tasks: Dict[str, np.ndarray],
                split: str,
                batch_size: int = 256) -> Dict[str, list]:
    """``{'full': [[greater, ties], ...], 'sampled': [...]}`` for every task of ``split``."""
    import torch
    hist, target, neg = tasks[f'{split}_hist'], tasks[f'{split}_target'], tasks[f'{split}_neg']
    full, sampled = [], []
    with torch.no_grad():
        for start in range(0, len(target), batch_size):
            rows = slice(start, start + batch_size)
            scores = torch.as_tensor(score_fn(hist[rows])).float()[:, 1:]  # drop padding
            t = torch.as_tensor(target[rows]) - 1
            mine = scores.gather(1, t[:, None])  # [B, 1]
            # the target's own column counts as a tie with itself: remove it
            full.append(torch.stack([(scores > mine).sum(1), (scores == mine).sum(1) - 1], 1))
            cand = scores.gather(1, torch.as_tensor(neg[rows]) - 1)  # [B, 100]
            sampled.append(torch.stack([(cand > mine).sum(1), (cand == mine).sum(1)], 1))
    return {
        'full': torch.cat(full).tolist(),
        'sampled': torch.cat(sampled).tolist(),
    }


def _gain_sum(rank_lo: np.ndarray, rank_hi: np.ndarray, k: int, name: str) -> np.ndarray:
    r = np.arange(k, dtype=np.float64)
    gain = np.ones(k) if name == 'hr' else 1.0 / np.log2(r + 2.0)
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    return cum[np.minimum(rank_hi, k)] - cum[np.minimum(rank_lo, k)]


def metrics_from_counts(counts, k: int = 10) -> Dict[str, np.ndarray]:
    """Per-task ``hr@k`` and ``ndcg@k`` from ``[[greater, ties], ...]``: the mean of the
    metric over the ranks ``greater .. greater + ties`` (0-based), i.e. ties averaged as
    :func:`mmext.evaluation.metrics.ranking.ranking_metric_values` does."""
    c = np.asarray(counts, dtype=np.int64).reshape(-1, 2)
    g, e = c[:, 0], c[:, 1]
    return {f'{name}@{k}': _gain_sum(g, g + e + 1, k, name) / (e + 1) for name in ('hr', 'ndcg')}
