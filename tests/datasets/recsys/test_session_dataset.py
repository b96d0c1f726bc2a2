"""SessionDataset: reset masks per batch, targets, time split without leaks, unseen items."""
import os.path as osp

import numpy as np
import pytest

from mmext.datasets.recsys.session_dataset import SessionDataset, load_sessions
from mmext.datasets.recsys.session_parallel import SessionParallelBatchSampler

DAY = 86400.0


def write_sessions(tmp_path):
    """Hand-built click log: 4 training sessions, 2 test sessions (last day)."""
    rows = [  # session, item, time
        ('s1', 'a', 0),
        ('s1', 'b', 10),
        ('s1', 'c', 20),
        ('s2', 'b', 100),
        ('s2', 'a', 110),
        ('s3', 'c', 200),
        ('s3', 'a', 210),
        ('s3', 'b', 220),
        ('s3', 'c', 230),
        ('s4', 'a', 300),
        ('s4', 'c', 310),
        # test: ends within the last day; 'z' never occurs in training
        ('t1', 'a', 5 * DAY),
        ('t1', 'z', 5 * DAY + 5),
        ('t1', 'b', 5 * DAY + 9),
        ('t2', 'z', 5 * DAY + 20),
        ('t2', 'c', 5 * DAY + 30),
    ]
    path = tmp_path / 'clicks.tsv'
    lines = ['SessionId\tItemId\tTime'] + [f'{s}\t{i}\t{t}' for s, i, t in rows[::-1]]
    path.write_text('\n'.join(lines) + '\n')
    return str(path), rows


def make(tmp_path, split):
    path, rows = write_sessions(tmp_path)
    return SessionDataset(
        split=split,
        data_path=str(path),
        file_format='session',
        min_item_support=1,
        test_seconds=DAY), rows


def test_reset_mask_exactly_at_session_starts(tmp_path):
    ds, _ = make(tmp_path, 'train')
    assert ds.num_sessions == 4 and len(ds) == 2 + 1 + 3 + 1
    seed = type('S', (), dict(seed=0, epoch=0, dataset=ds))()
    batches = [ds.__getitems__(ev) for ev in SessionParallelBatchSampler(seed, 2, shuffle=False)]
    names = ds.item_map.decode
    seen_inputs = []
    for step, b in enumerate(batches):
        for slot in range(2):
            if not b['valid'][slot]:
                assert b['item'][slot] == 0 and not b['reset'][slot]
                continue
            seen_inputs.append(int(b['item'][slot]))
    # Sessions in start order: s1 (a b c), s2 (b a), s3 (c a b c), s4 (a c); slot 0 takes s1,
    # slot 1 s2 then s3 (s2 ends after one step), slot 0 s4 after s1's two steps.
    resets = [b['reset'].tolist() for b in batches]
    assert resets == [[True, True], [False, True], [True, False], [False, False]]
    assert names(batches[0]['item']).tolist() == ['a', 'b']
    assert names(batches[0]['target']).tolist() == ['b', 'a']
    assert names(batches[1]['item']).tolist() == ['b', 'c']
    assert names(batches[1]['target']).tolist() == ['c', 'a']
    assert len(seen_inputs) == len(ds)


def test_time_split_and_unseen_items(tmp_path):
    train, rows = make(tmp_path, 'train')
    test, _ = make(tmp_path, 'test')
    meta = test.metainfo
    # 'z' is dropped from the test sessions (2 events) and counted; t2 then has 1 event left.
    assert meta['num_unseen_test_events'] == 2
    assert meta['num_test_sessions_too_short'] == 1
    assert test.num_sessions == 1
    assert test.item_map.decode(test.items.numpy()).tolist() == ['a', 'b']
    # No test item is outside training, and no test event is a training event.
    train_items = set(train.items.tolist())
    assert set(test.items.tolist()) <= train_items and 0 not in train_items
    data = load_sessions(
        data_path=meta['path'], file_format='session', min_item_support=1, test_seconds=DAY)
    assert not set(data['train'].session_keys) & set(data['test'].session_keys)
    assert data['train'].times.max() < data['test'].times.min()
    # The item map covers exactly the training items and is stored in metainfo.
    assert sorted(train.item_map.tokens) == ['a', 'b', 'c']
    assert meta['item_map'] == train.item_map.to_dict()
    counts = train.item_counts
    assert counts[0] == 0 and counts.sum() == 11


def test_ml100k_split_has_no_leak():
    kwargs = dict(session_gap=3600, test_seconds=21 * DAY)
    data = load_sessions(**kwargs)
    tr, te = data['train'], data['test']
    assert set(np.unique(te.items)) <= set(np.unique(tr.items))
    assert not set(tr.session_keys) & set(te.session_keys)
    # Every training session ends before the split time; every test session after it.
    split = data['stats']['split_time']
    ends_tr = tr.times[tr.offsets[1:] - 1]
    ends_te = te.times[te.offsets[1:] - 1]
    assert (ends_tr < split).all() and (ends_te >= split).all()
    assert data['stats']['num_unseen_test_events'] > 0  # ml-100k has some; they are counted
    assert (np.diff(tr.offsets) >= 2).all() and (np.diff(te.offsets) >= 2).all()


def test_bad_split_and_indices(tmp_path):
    with pytest.raises(ValueError, match='split'):
        SessionDataset(split='val')
    ds, _ = make(tmp_path, 'train')
    with pytest.raises(IndexError):
        ds.__getitems__([len(ds.items) - 1])


def test_rsc15_configs_read_raw_and_official_files(tmp_path):
    """Both RSC15 configs' dataset settings, on tiny files in the two formats."""
    from mmengine.config import Config
    root = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    raw = tmp_path / 'yoochoose-clicks.dat'
    lines, t0 = [], 1396861869.0  # 2014-04-07T09:11:09Z
    rng = np.random.default_rng(0)
    for s in range(60):
        day = 0 if s < 50 else 3  # the last 10 sessions are in the last day
        for e in range(int(rng.integers(2, 5))):
            stamp = np.datetime64(int((t0 + day * DAY + s * 600 + e * 30) * 1000), 'ms')
            lines.append(f'{s},{stamp}Z,{int(rng.integers(100, 106))},0')
    raw.write_text('\n'.join(lines) + '\n')
    cfg = Config.fromfile(osp.join(root, 'configs/gru4rec/gru4rec_rsc15.py'))
    args = dict(cfg.train_dataloader.dataset, data_path=str(raw))
    args.pop('type')
    train = SessionDataset(**args)
    test = SessionDataset(**dict(args, split='test'))
    assert train.num_sessions == 50 and test.num_sessions == 10
    # The official split files: tab separated with a header; the test file is used as given.
    tr_file, te_file = tmp_path / 'rsc15_train_full.txt', tmp_path / 'rsc15_test.txt'
    tr_file.write_text('SessionId\tItemId\tTime\n1\t5\t10\n1\t6\t20\n2\t6\t30\n2\t5\t40\n')
    te_file.write_text('SessionId\tItemId\tTime\n9\t5\t50\n9\t7\t60\n9\t6\t70\n')
    cfg = Config.fromfile(osp.join(root, 'configs/gru4rec/gru4rec_rsc15_official_split.py'))
    args = dict(cfg.test_dataloader.dataset, data_path=str(tr_file), test_data_path=str(te_file))
    args.pop('type')
    test = SessionDataset(**args)
    assert test.item_map.decode(test.items.numpy()).tolist() == ['5', '6']
    assert test.metainfo['num_unseen_test_events'] == 1


def test_leave_one_out_sequences(tmp_path):
    """Per user: train on all but the last two events, validate on the second-to-last, test on
    the last, each after its whole history; unseen held-out items are dropped and counted."""
    rows = [('u1', 'a'), ('u1', 'b'), ('u1', 'c'), ('u1', 'a'), ('u1', 'b'), ('u2', 'b'),
            ('u2', 'c'), ('u2', 'a'), ('u3', 'a'), ('u3', 'b'), ('u3', 'c'), ('u3', 'z')]
    path = tmp_path / 'seq.tsv'
    path.write_text('SessionId\tItemId\tTime\n' + ''.join(f'{u}\t{i}\t{t}\n'
                                                          for t, (u, i) in enumerate(rows)))
    args = dict(
        data_path=str(path),
        file_format='session',
        min_item_support=1,
        split_mode='leave_one_out',
        unseen_targets='drop')
    train = SessionDataset('train', **args)
    names = train.item_map.decode
    assert names(train.items.numpy()).tolist() == ['a', 'b', 'c', 'a', 'b']  # u1, u3; u2 < 2
    expected = {'valid': ['a', 'c', 'c'], 'test': ['b', 'a']}
    for split, targets in expected.items():
        ds = SessionDataset(split, **args)
        assert len(ds) == len(targets)
        seed = type('S', (), dict(seed=0, epoch=0, dataset=ds))()
        got, history_steps = [], 0
        for ev in SessionParallelBatchSampler(seed, 2, shuffle=False):
            b = ds.__getitems__(ev)
            got += names(b['target'][b['evaluate']].numpy()).tolist()
            history_steps += int((b['valid'] & ~b['evaluate']).sum())
        assert sorted(got) == sorted(targets) and history_steps > 0
    meta = SessionDataset('test', **args).metainfo
    assert meta['test_unseen_targets'] == 1 and meta['num_unseen_targets'] == 1
    with pytest.raises(ValueError, match="split must be one of"):
        SessionDataset('valid', **dict(args, split_mode='time'))
    # the default scores every held-out event: u3's unseen 'z' is ranked like any other item
    ranked = dict(args, unseen_targets=None)
    test = SessionDataset('test', **ranked)
    assert len(test) == 3 and test.metainfo['test_untrained_targets'] == 1
    assert test.metainfo['eval_population']['scored'] == 3
    assert 'z' in test.item_map and test.num_items == 4
    assert SessionDataset('train', **ranked).items.tolist() == train.items.tolist()
    with pytest.raises(ValueError, match="unseen_targets='rank' needs split_mode"):
        SessionDataset('test', **dict(args, split_mode='time', unseen_targets='rank'))
