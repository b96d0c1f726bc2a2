"""The hyper-parameter mapping and the Markdown tables of ``bench_sasrec_official.py``."""
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .protocol import metrics_from_counts

__all__ = ['mapping_rows', 'mapping_table', 'seed_metrics', 'summary_tables', 'mean_se']


def mapping_rows(official: dict, ours_model: dict, ours_cfg: dict) -> List[Tuple[str, str, str]]:
    """(official key = value, ours key = value, note) for every setting of either side."""
    # SASRec's defaults for what the config leaves out
    m = dict(
        dict(num_negatives=1, init_std=None, position_origin='right', norm_eps=1e-8), **ours_model)
    o = official
    return [
        (f"maxlen = {o['maxlen']}", f"model.max_len = {m['max_len']}, datasets' max_len", ''),
        (f"hidden_units = {o['hidden_units']}",
         f"model.embed_dims = {m['embed_dims']}, model.ffn_dims = {m['ffn_dims']}",
         "the official feed-forward net is two width-d Conv1d of kernel 1"),
        (f"num_blocks = {o['num_blocks']}", f"model.num_blocks = {m['num_blocks']}", ''),
        (f"num_heads = {o['num_heads']}", f"model.num_heads = {m['num_heads']}", ''),
        (f"dropout_rate = {o['dropout_rate']}",
         f"model.dropout = {m['dropout']} (attn_dropout = {m.get('attn_dropout')}, "
         f"ffn_dropout = {m.get('ffn_dropout')}, attn_output_dropout = "
         f"{m.get('attn_output_dropout')}; None = dropout)",
         'official: embeddings, attention weights, inside and after the feed-forward net; '
         'none on the attention output'),
        (f"norm_first = {o['norm_first']}", f"model.norm = {m['norm']!r}",
         'block layouts differ by design (docs/components/sasrec.md)'),
        ('LayerNorm eps = 1e-8 (model.py)', f"model.norm_eps = {m['norm_eps']}", ''),
        (f"l2_emb = {o['l2_emb']}", 'no weight decay', ''),
        (f"lr = {o['lr']}", f"optimizer.lr = {ours_cfg['lr']}", ''),
        ('Adam betas = (0.9, 0.98) (main.py)', f"optimizer = {ours_cfg['optimizer']}", ''),
        (f"batch_size = {o['batch_size']}", f"train_dataloader.batch_size = "
         f"{ours_cfg['batch_size']}", ''),
        ('num_epochs', 'train_cfg.max_epochs', 'both --epochs'),
        ('BCEWithLogitsLoss(pos) + BCEWithLogitsLoss(neg), positions with a target',
         f"model.loss = {m['loss']!r}, num_negatives = {m['num_negatives']}",
         'the same mean over positions'),
        ('WarpSampler: last maxlen items per user, 1 negative per position outside the '
         "user's training items, 3 worker processes",
         f"train_windows = {ours_cfg['train_windows']!r}, num_train_negatives = "
         f"{ours_cfg['num_train_negatives']}, num_workers = {ours_cfg['num_workers']}",
         'same windows and negatives; epochs: the official workers cycle their own '
         'permutations, ours is one permutation per epoch'),
        ('xavier_normal_ on every >= 2-D parameter (main.py)',
         f"model.init_std = {m['init_std']} (None: Xavier normal)", ''),
        ('positions 1..maxlen, 0 at padding (padding_idx)',
         f"model.position_origin = {m['position_origin']!r}",
         'newest item at the last position on both sides'),
        ('device = cpu', 'CPU', 'torch.set_num_threads(--threads) and OMP_NUM_THREADS'),
    ]


def mapping_table(rows) -> str:
    lines = ['| official (pmixer) | mmext | note |', '|---|---|---|']
    lines += [f'| {a} | {b} | {c} |' for a, b, c in rows]
    return '\n'.join(lines)


def mean_se(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n); 0 for one value)."""
    v = np.asarray(values, dtype=np.float64)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.
    return float(v.mean()), se


def seed_metrics(result: dict) -> Dict[str, float]:
    """One side's run: CPU and wall seconds per epoch and the metrics of both protocols."""
    epochs = result['epochs']
    out = {
        'cpu_per_epoch': float(np.mean([e['cpu_self'] + e['cpu_children'] for e in epochs])),
        'cpu_children_per_epoch': float(np.mean([e['cpu_children'] for e in epochs])),
        'wall_per_epoch': float(np.mean([e['wall'] for e in epochs])),
    }
    for split, by_protocol in result['counts'].items():
        for protocol, counts in by_protocol.items():
            for name, values in metrics_from_counts(counts).items():
                out[f'{split}/{protocol}/{name}'] = float(values.mean())
    return out


def _paired_se(a: dict, b: dict, split: str, protocol: str, name: str) -> Tuple[float, float]:
    """Mean per-user difference b - a of one metric and its standard error across users."""
    x = metrics_from_counts(a['counts'][split][protocol])[name]
    y = metrics_from_counts(b['counts'][split][protocol])[name]
    d = y - x
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


KEYS = ('cpu_per_epoch', 'wall_per_epoch', 'test/full/ndcg@10', 'test/full/hr@10',
        'test/sampled/ndcg@10', 'test/sampled/hr@10', 'val/full/ndcg@10', 'val/full/hr@10')


def summary_tables(runs: List[dict]) -> str:
    """``runs``: ``[{'seed', 'official': result, 'ours': result}, ...]`` -> per-seed table and
    the mean over seeds with standard errors and the ratios mmext / official."""
    lines = [
        '| seed | side | CPU s/epoch (children) | wall s/epoch | test NDCG@10 full | '
        'test HR@10 full | test NDCG@10 sampled | test HR@10 sampled | val NDCG@10 full | '
        'val HR@10 full |', '|---|---|---|---|---|---|---|---|---|---|'
    ]
    per = {'official': [], 'ours': []}
    for run in runs:
        for side in ('official', 'ours'):
            m = seed_metrics(run[side])
            per[side].append(m)
            lines.append(f"| {run['seed']} | {side} | {m['cpu_per_epoch']:.2f} "
                         f"({m['cpu_children_per_epoch']:.2f}) | {m['wall_per_epoch']:.2f} | " +
                         ' | '.join(f'{m[k]:.4f}' for k in KEYS[2:]) + ' |')
        d, se = _paired_se(run['official'], run['ours'], 'test', 'full', 'ndcg@10')
        lines.append(f"| {run['seed']} | mmext - official, per user | | | {d:+.4f} ± {se:.4f} "
                     '| | | | | |')
    lines += [
        '', f'Mean over {len(runs)} seed(s) ± standard error across seeds; ratio = mean over '
        'seeds of the per-seed ratio mmext / official ± its standard error:', '',
        '| quantity | official | mmext | mmext / official |', '|---|---|---|---|'
    ]
    for key in KEYS:
        o = mean_se([m[key] for m in per['official']])
        u = mean_se([m[key] for m in per['ours']])
        r = mean_se(
            [b[key] / a[key] if a[key] else math.nan for a, b in zip(per['official'], per['ours'])])
        lines.append(f'| {key} | {o[0]:.4f} ± {o[1]:.4f} | {u[0]:.4f} ± {u[1]:.4f} | '
                     f'{r[0]:.3f} ± {r[1]:.3f} |')
    return '\n'.join(lines)
