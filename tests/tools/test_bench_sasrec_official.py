"""The pieces of tools/benchmark/bench_sasrec_official.py that decide what the comparison means:
the file each side reads and the split it makes, the common evaluation tasks and metrics, the
CPU clock of a process tree and the command line.  (The official code itself is not here: the
benchmark takes a checkout of it as an argument.)"""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mmext.datasets.recsys import LeaveOneOutSequenceDataset
from mmext.evaluation.metrics.ranking import rank_bounds, ranking_metric_values

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools' / 'benchmark'))
import bench_sasrec_official  # noqa: E402
from sasrec_official_bench import cputime, data, protocol, report  # noqa: E402

sys.path.pop(0)

# users 7, 3, 5, 9 (file order of first appearance), items in time order per user
LINES = ('7 1\n3 4\n7 2\n7 3\n3 5\n7 4\n5 6\n3 1\n7 5\n9 2\n9 3\n9 4\n5 2\n5 3\n3 2\n9 6\n'
         '7 6\n8 1\n')


def test_read_and_write_both_formats_keep_each_users_order(tmp_path):
    src = tmp_path / 'Video.txt'
    src.write_text(LINES)
    users, seqs = data.read_user_item_file(str(src))
    assert users == [7, 3, 5, 9, 8]
    assert [s.tolist() for s in seqs] == [[1, 2, 3, 4, 5, 6], [4, 5, 1, 2], [6, 2, 3], [2, 3, 4, 6],
                                          [1]]
    back = data.read_user_item_file(
        data.write_user_item_file(str(tmp_path / 'data' / 'x.txt'), users, seqs))
    assert back[0] == users and all(np.array_equal(a, b) for a, b in zip(back[1], seqs))
    # our dataset reads the atomic copy with the same per-user order and leave-one-out split
    inter = data.write_atomic_inter(str(tmp_path / 'x.inter'), users, seqs)
    test = LeaveOneOutSequenceDataset(ann_file=inter, split='test', max_len=4)
    tokens = test.metainfo['item_map']['tokens']
    user_tokens = test.metainfo['user_map']['tokens']
    got = {int(user_tokens[d['user']]): int(tokens[d['target'] - 1]) for d in test.data_list}
    assert got == {7: 6, 3: 2, 5: 3, 9: 6}  # user 8 (1 interaction) is not evaluated
    train = LeaveOneOutSequenceDataset(
        ann_file=inter, split='train', max_len=3, train_windows='last')
    counts = data.split_counts(seqs, max_len=3)
    assert counts['train_targets_ours'] == sum(len(d['target']) for d in train.data_list)
    # 7: 4 training items -> 3 pairs; 3: 2 -> 1; 5 (3 interactions): 1 item -> 0 here, while
    # the official split keeps all 3 for training (2 pairs); 9: 2 -> 1; 8: none
    assert counts['train_targets_ours'] == 3 + 1 + 0 + 1
    assert counts['train_targets_official'] == 3 + 1 + 2 + 1
    assert (counts['evaluated_official'], counts['evaluated_ours'], counts['users_with_3']) == \
        (3, 4, 1)


def test_eval_tasks_histories_targets_and_negatives(tmp_path):
    seqs = [np.array([1, 2, 3, 4, 5, 6]), np.array([4, 5, 1, 2]), np.array([6, 2, 3])]
    tasks = data.eval_tasks(seqs, max_len=3, num_items=30, seed=0, num_negatives=20)
    assert tasks['user_index'].tolist() == [0, 1]  # >= 4 interactions
    assert tasks['val_hist'].tolist() == [[2, 3, 4], [0, 4, 5]]
    assert tasks['val_target'].tolist() == [5, 1]
    assert tasks['test_hist'].tolist() == [[3, 4, 5], [4, 5, 1]]
    assert tasks['test_target'].tolist() == [6, 2]
    for split in ('val', 'test'):
        for row, u in enumerate(tasks['user_index']):
            neg = tasks[f'{split}_neg'][row]
            assert len(set(neg.tolist())) == 20 and neg.min() >= 1 and neg.max() <= 30
            banned = set(seqs[u][:-2].tolist()) | {int(tasks[f'{split}_target'][row])}
            assert not banned & set(neg.tolist())
    again = data.eval_tasks(seqs, max_len=3, num_items=30, seed=0, num_negatives=20)
    assert all(np.array_equal(tasks[k], again[k]) for k in tasks)  # seeded


def test_rank_counts_and_metrics_agree_with_ranking_metric():
    g = torch.Generator().manual_seed(0)
    num_items = 40
    tasks = {
        'test_hist':
        np.zeros((12, 3), dtype=np.int64),
        'test_target':
        torch.randint(1, num_items + 1, (12, ), generator=g).numpy(),
        'test_neg':
        np.stack([
            np.random.default_rng(i).choice(np.arange(1, num_items + 1), 5, replace=False)
            for i in range(12)
        ])
    }
    # coarse scores: many ties, and column 0 (padding) scores highest but never counts
    scores = torch.randint(0, 4, (12, num_items + 1), generator=g).float()
    scores[:, 0] = 100.
    counts = protocol.rank_counts(lambda hist: scores[:len(hist)], tasks, 'test', batch_size=12)
    for row in range(12):
        t = int(tasks['test_target'][row])
        assert tuple(counts['full'][row]) == rank_bounds(scores[row], t, torch.tensor([0]))
        cand = torch.cat([scores[row, t:t + 1], scores[row, tasks['test_neg'][row]]])
        if t not in tasks['test_neg'][row]:
            assert tuple(counts['sampled'][row]) == rank_bounds(cand, 0)
    c = np.asarray(counts['full'])
    ours = protocol.metrics_from_counts(c)
    for name, key in (('ndcg', 'ndcg@10'), ('hr', 'hr@10')):
        np.testing.assert_allclose(ours[key],
                                   ranking_metric_values(c[:, 0], c[:, 1], name, 10, 'average'))


def test_tree_cpu_seconds_counts_a_busy_child():
    before = cputime.tree_cpu_seconds()
    child = subprocess.Popen([
        sys.executable, '-c', 'import time\nt = time.process_time()\n'
        'while time.process_time() - t < 0.5: pass\ntime.sleep(30)'
    ])
    try:
        deadline = time.time() + 20
        while time.time() < deadline:  # live child: read from /proc
            live = cputime.tree_cpu_seconds()['children'] - before['children']
            if live >= 0.45:
                break
            time.sleep(0.1)
        assert live >= 0.45
        assert child.pid in cputime.descendants(__import__('os').getpid())
    finally:
        child.kill()
        child.wait()
    # finished and waited for: counted once, through RUSAGE_CHILDREN
    after = cputime.tree_cpu_seconds()['children'] - before['children']
    assert 0.45 <= after < live + 0.5


def test_parse_args_and_mapping(tmp_path):
    with pytest.raises(SystemExit):
        bench_sasrec_official.parse_args([])  # the checkout is required
    with pytest.raises(SystemExit):
        bench_sasrec_official.parse_args(['--official-repo', str(tmp_path)])  # no model.py
    (tmp_path / 'python').mkdir()
    (tmp_path / 'python' / 'model.py').write_text('')
    args = bench_sasrec_official.parse_args(['--official-repo', str(tmp_path), '--seeds', '4'])
    assert args.data == str(tmp_path / 'python' / 'data' / 'Video.txt')
    assert (args.seeds, args.epochs, args.max_len, args.dropout) == ([4], 20, 50, 0.5)
    with pytest.raises(SystemExit):
        bench_sasrec_official.parse_args(['--official-repo', str(tmp_path), '--ours-model', '[1]'])
    official = bench_sasrec_official.official_args(args)
    ours = bench_sasrec_official.ours_model_args(args)
    rows = report.mapping_rows(
        official, dict(ours, norm='pre', loss='bce'),
        dict(
            lr=1e-3,
            optimizer={},
            batch_size=128,
            num_workers=0,
            train_windows='last',
            num_train_negatives=1))
    text = report.mapping_table(rows)
    for key in official:  # every setting of the official side is mapped
        assert f'{key} = ' in text, key
    assert (ours['embed_dims'], ours['ffn_dims'], ours['dropout']) == (50, 50, 0.5)


def test_mean_se():
    assert report.mean_se([1.0]) == (1.0, 0.)
    mean, se = report.mean_se([1.0, 2.0, 3.0])
    assert mean == 2.0 and se == pytest.approx(1 / np.sqrt(3))


def test_video_config_is_the_official_recipe(tmp_path):
    """configs/sasrec/sasrec_video.py holds the values the benchmark maps key by key."""
    from mmengine.config import Config
    cfg = Config.fromfile(
        str(Path(bench_sasrec_official.ROOT) / 'configs' / 'sasrec' / 'sasrec_video.py'))
    (tmp_path / 'python').mkdir()
    (tmp_path / 'python' / 'model.py').write_text('')
    args = bench_sasrec_official.parse_args(['--official-repo', str(tmp_path)])
    for key, value in bench_sasrec_official.ours_model_args(args).items():
        assert cfg.model[key] == value, key
    assert cfg.model.attn_output_dropout == 0. and cfg.model.loss == 'bce'
    assert cfg.train_dataloader.batch_size == args.batch_size
    assert cfg.train_dataloader.dataset.train_windows == 'last'
    assert cfg.train_dataloader.dataset.num_train_negatives == 1
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, tuple(opt.betas)) == ('Adam', args.lr, (0.9, 0.98))
    assert cfg.train_cfg.max_epochs == args.epochs
