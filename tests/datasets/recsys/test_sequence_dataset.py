"""LeaveOneOutSequenceDataset and sequence_collate (mmext/datasets/recsys/sequence_dataset.py).

Hand-built RecBole atomic files check the split position by position (time order, ties in file
order), truncation and left padding, the training windows, that no held-out item leaks into
training, that unseen items are dropped and counted, the id maps in metainfo, the negatives, and
that mmengine's Runner builds working dataloaders from a config.
"""
import numpy as np
import pytest
import torch
from mmengine import DefaultScope
from mmengine.runner import Runner

from mmext.datasets.recsys import IdMap, LeaveOneOutSequenceDataset, sequence_collate

HEADER = 'user_id:token\titem_id:token\trating:float\ttimestamp:float'


def write(tmp_path, rows, name='toy.inter'):
    path = tmp_path / name
    path.write_text('\n'.join([HEADER] + ['\t'.join(map(str, r)) for r in rows]) + '\n')
    return str(path)


# user a: e(10) b(20) c(20, after b in the file) d(30) f(5, first in time)
# user z: b(1) c(2) d(3) x(4)
# user w: d(1) x(2) f(3) g(4)         -> its test item g is never seen in training
# user q: b(1) e(2)                   -> too short to evaluate: all training
ROWS = [('a', 'e', 4, 10), ('a', 'b', 3, 20), ('z', 'b', 5, 1), ('a', 'c', 5, 20), ('z', 'c', 1, 2),
        ('a', 'd', 2, 30), ('z', 'd', 4, 3), ('z', 'x', 3, 4), ('a', 'f', 5, 5), ('q', 'b', 5, 1),
        ('q', 'e', 5, 2), ('w', 'd', 1, 1), ('w', 'x', 1, 2), ('w', 'f', 1, 3), ('w', 'g', 1, 4)]


def decode(ds, ids):
    return IdMap.from_dict(ds.metainfo['item_map']).decode([i for i in ids if i > 0]).tolist()


def test_split_positions_time_order_and_ties(tmp_path):
    ann = write(tmp_path, ROWS)
    drop = dict(ann_file=ann, max_len=6, unseen_targets='drop')
    train = LeaveOneOutSequenceDataset(split='train', **drop)
    val = LeaveOneOutSequenceDataset(split='val', **drop)
    test = LeaveOneOutSequenceDataset(split='test', **drop)
    users = IdMap.from_dict(train.metainfo['user_map'])
    by_user = {users.decode([train[i]['user'] + 1])[0]: train[i] for i in range(len(train))}
    # a in time order: f e b c d (b before c: equal times keep file order); train = f e b
    a = by_user['a']
    assert decode(train, a['seq']) == ['f', 'e'] and decode(train, a['target']) == ['e', 'b']
    assert decode(train, by_user['z']['seq']) == ['b'] and decode(train,
                                                                  by_user['q']['seq']) == ['b']
    assert decode(train, by_user['q']['target']) == ['e']  # short user: everything trains
    val_a = next(val[i] for i in range(len(val)) if users.decode([val[i]['user'] + 1])[0] == 'a')
    test_a = next(test[i] for i in range(len(test))
                  if users.decode([test[i]['user'] + 1])[0] == 'a')
    assert decode(val, [val_a['target']]) == ['c'] and decode(val, val_a['seq']) == ['f', 'e', 'b']
    assert decode(test, [test_a['target']]) == ['d']
    assert decode(test, test_a['seq']) == ['f', 'e', 'b', 'c']  # the validation item included
    assert sorted(decode(test, test_a['seen'])) == ['b', 'c', 'e', 'f']
    test_z = next(test[i] for i in range(len(test))
                  if users.decode([test[i]['user'] + 1])[0] == 'z')
    assert decode(test, [test_z['target']]) == ['x'] and decode(test,
                                                                test_z['seq']) == ['b', 'c', 'd']
    for ds, unseen in ((val, 0), (test, 1)):  # w's test item g is only ever held out
        stats = ds.metainfo['stats']
        assert stats['users_too_short'] == 1 and stats['num_users'] == 4
        assert stats[f'{ds.split}_targets_unseen'] == unseen
        assert len(ds) == 3 - unseen
    assert 'g' not in test.metainfo['item_map']['tokens']


def _unseen_rows():
    # Every user has >= 3 items; items 'new1'/'new2' appear only as held-out items.
    rows = []
    for u in range(4):
        for t, item in enumerate(['i1', 'i2', 'i3', 'i4']):
            rows.append((f'u{u}', item, 5, t))
    rows += [
        ('u0', 'new1', 5, 10),
        ('u0', 'i1', 5, 11),  # val new1 unseen, test i1 seen
        ('u1', 'i2', 5, 10),
        ('u1', 'new2', 5, 11)
    ]  # test new2 unseen
    return rows


def test_unseen_items_dropped_and_counted(tmp_path):
    ann = write(tmp_path, _unseen_rows())
    val = LeaveOneOutSequenceDataset(ann_file=ann, split='val', max_len=8, unseen_targets='drop')
    test = LeaveOneOutSequenceDataset(ann_file=ann, split='test', max_len=8, unseen_targets='drop')
    assert val.metainfo['stats']['val_targets_unseen'] == 1
    assert test.metainfo['stats']['test_targets_unseen'] == 1
    assert len(val) == 3 and len(test) == 3
    assert 'new1' not in val.metainfo['item_map']['tokens']
    # u0's test history lost its unseen validation item, and that was counted
    assert test.metainfo['stats']['history_items_unseen'] == 1
    for ds in (val, test):
        for i in range(len(ds)):
            assert 1 <= ds[i]['target'] <= ds.metainfo['num_items']
    assert test.metainfo['eval_population'] == dict(
        unit='users',
        scored=3,
        dropped={
            'fewer than 3 interactions (training only)': 0,
            "held-out item unseen in training (unseen_targets='drop')": 1
        })


def test_unseen_held_out_items_are_ranked_by_default(tmp_path):
    """Every user is evaluated (the papers' population): items seen only as held-out items get
    ids after the training items, whose ids do not change."""
    ann = write(tmp_path, _unseen_rows())
    train = LeaveOneOutSequenceDataset(ann_file=ann, split='train', max_len=8)
    val = LeaveOneOutSequenceDataset(ann_file=ann, split='val', max_len=8)
    test = LeaveOneOutSequenceDataset(ann_file=ann, split='test', max_len=8)
    dropped = LeaveOneOutSequenceDataset(
        ann_file=ann, split='train', max_len=8, unseen_targets='drop')
    assert len(val) == 4 and len(test) == 4
    tokens = train.metainfo['item_map']['tokens']
    assert list(tokens[:4]) == list(dropped.metainfo['item_map']['tokens'])
    assert sorted(tokens[4:]) == ['new1', 'new2'] and train.metainfo['num_items'] == 6
    assert [train[i]['seq'].tolist() for i in range(len(train))] == \
        [dropped[i]['seq'].tolist() for i in range(len(dropped))]
    stats = test.metainfo['stats']
    assert stats['test_targets_unseen'] == 1 and stats['test_targets_dropped'] == 0
    assert stats['history_items_unseen'] == 0  # u0's unseen validation item stays in
    targets = sorted(test[i]['target'] for i in range(len(test)))
    assert targets[-1] > stats['num_train_items']  # new2: ranked by its untrained embedding
    assert test.metainfo['eval_population']['scored'] == 4
    assert sum(test.metainfo['eval_population']['dropped'].values()) == 0


def _random_log(tmp_path, num_users=30, num_items=50, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        n = int(rng.integers(3, 40))
        items = rng.choice(num_items, size=n, replace=False)  # distinct items per user
        for t, item in enumerate(items):
            rows.append((f'u{u}', f'i{item}', 5, int(rng.integers(0, 3)) + 3 * t))
    return write(tmp_path, rows)


@pytest.mark.parametrize('windows, stride', [('last', None), ('all', None), ('all', 3)])
def test_no_held_out_item_leaks_into_training(tmp_path, windows, stride):
    ann = _random_log(tmp_path)
    kw = dict(ann_file=ann, max_len=7, train_windows=windows, train_stride=stride)
    train = LeaveOneOutSequenceDataset(split='train', num_train_negatives=2, **kw)
    val = LeaveOneOutSequenceDataset(split='val', **kw)
    test = LeaveOneOutSequenceDataset(split='test', **kw)
    held_out = {}
    for ds in (val, test):
        for i in range(len(ds)):
            held_out.setdefault(ds[i]['user'], set()).add(ds[i]['target'])
    trained = {}
    targets = {}
    for i in range(len(train)):
        s = train[i]
        assert s['seq'].shape == (7, ) and s['target'].shape == (7, )
        assert s['negatives'].shape == (7, 2)
        items = set(s['seq'][s['seq'] > 0].tolist()) | set(s['target'][s['target'] > 0].tolist())
        trained.setdefault(s['user'], set()).update(items)
        targets.setdefault(s['user'], []).extend(s['target'][s['target'] > 0].tolist())
        # training negatives avoid the user's training items; padded positions have none
        neg = s['negatives'][s['seq'] > 0]
        assert not set(neg.flatten().tolist()) & trained[s['user']]
        assert (s['negatives'][s['seq'] == 0] == 0).all()
    for user, items in held_out.items():
        assert not items & trained.get(user, set()), user
    if windows == 'all':  # every training target exactly once per epoch
        raw = LeaveOneOutSequenceDataset(ann_file=ann, split='train', max_len=1000)
        for i in range(len(raw)):
            s = raw[i]
            full = s['target'][s['target'] > 0].tolist()
            assert sorted(targets[s['user']]) == sorted(full)


def test_truncation_and_left_padding(tmp_path):
    # u: i0..i11 (train i0..i9, val i10, test i11); v: i0 i1 i11 i10 | val i12 | test i13
    rows = [('u', f'i{t}', 5, t) for t in range(12)]
    rows += [('v', f'i{t}', 5, k) for k, t in enumerate([0, 1, 11, 10, 12, 13])]
    ann = write(tmp_path, rows)
    train = LeaveOneOutSequenceDataset(ann_file=ann, split='train', max_len=5)
    test = LeaveOneOutSequenceDataset(ann_file=ann, split='test', max_len=5)
    u = next(train[i] for i in range(len(train)) if train[i]['user'] == 0)
    assert decode(train, u['seq']) == ['i4', 'i5', 'i6', 'i7', 'i8']  # last 5 of i0..i8
    assert decode(train, u['target']) == ['i5', 'i6', 'i7', 'i8', 'i9']
    v = next(train[i] for i in range(len(train)) if train[i]['user'] == 1)
    assert v['seq'].tolist()[:2] == [0, 0] and (v['target'][:2] == 0).all()
    assert decode(train, v['seq']) == ['i0', 'i1', 'i11']
    assert decode(train, v['target']) == ['i1', 'i11', 'i10']
    t = next(test[i] for i in range(len(test)) if test[i]['user'] == 0)
    assert decode(test, [t['target']]) == ['i11']
    assert decode(test, t['seq']) == ['i6', 'i7', 'i8', 'i9', 'i10']
    assert sorted(t['seen'].tolist()) == sorted(
        test.metainfo['item_map']['tokens'].index(f'i{k}') + 1
        for k in range(11))  # the untruncated history i0..i10
    assert test.metainfo['stats']['test_targets_unseen'] == 1  # v's i13


@pytest.mark.parametrize('unseen', ['rank', 'drop'])
def test_item_counts_training_popularity(tmp_path, unseen):
    """Training parts of ROWS: a f e b, z b c, w d x, q b e (too short: all of it)."""
    ann = write(tmp_path, ROWS)
    expected = dict(f=1, e=2, b=3, c=1, d=1, x=1, g=0)
    for split in ('train', 'val', 'test'):
        ds = LeaveOneOutSequenceDataset(ann_file=ann, split=split, max_len=6, unseen_targets=unseen)
        counts = ds.item_counts
        tokens = ds.metainfo['item_map']['tokens']
        assert counts.dtype == np.int64 and counts.shape == (len(tokens) + 1, )
        assert counts[0] == 0  # padding
        assert {t: int(counts[i + 1]) for i, t in enumerate(tokens)} == \
            {t: n for t, n in expected.items() if unseen == 'rank' or t != 'g'}


def test_metainfo_id_maps_and_checkpoint_safe(tmp_path):
    ann = _random_log(tmp_path, seed=1)
    ds = LeaveOneOutSequenceDataset(ann_file=ann, split='train', max_len=7)
    meta = ds.metainfo
    items = IdMap.from_dict(meta['item_map'])
    assert len(items) == meta['num_items'] and meta['num_users'] == 30
    # plain python only: loads under torch's weights-only unpickler
    path = tmp_path / 'meta.pth'
    torch.save(dict(meta=dict(dataset_meta=meta)), path)
    loaded = torch.load(path, weights_only=True)['meta']['dataset_meta']
    assert IdMap.from_dict(loaded['item_map']) == items


def test_eval_negatives(tmp_path):
    ann = _random_log(tmp_path, seed=2)
    kw = dict(ann_file=ann, split='test', max_len=7, num_eval_negatives=10)
    a = LeaveOneOutSequenceDataset(**kw)
    b = LeaveOneOutSequenceDataset(**kw)
    pop = LeaveOneOutSequenceDataset(eval_negative_distribution='popularity', **kw)
    full = LeaveOneOutSequenceDataset(ann_file=ann, split='train', max_len=1000)
    counts = torch.zeros(a.metainfo['num_items'] + 1)
    for i in range(len(full)):
        s = full[i]
        counts += torch.bincount(torch.cat([s['seq'], s['target']]), minlength=len(counts)).float()
    for i in range(len(a)):
        s = a[i]
        assert torch.equal(s['negatives'], b[i]['negatives'])  # seeded: reproducible
        neg = set(s['negatives'].tolist())
        assert len(neg) == 10 and 0 not in neg
        assert s['target'] not in neg and not neg & set(s['seen'].tolist())
        assert (counts[pop[i]['negatives']] > 0).all()


def test_bad_arguments_and_files(tmp_path):
    ann = write(tmp_path, ROWS)
    for kwargs, match in [(dict(split='dev'), "split='dev'"),
                          (dict(train_windows='sliding'), 'train_windows'),
                          (dict(max_len=4, train_stride=5), 'train_stride=5'),
                          (dict(eval_negative_distribution='pop'), 'eval_negative_distribution'),
                          (dict(expected_num_items=99), 'expected_num_items=99')]:
        with pytest.raises(ValueError, match=match):
            LeaveOneOutSequenceDataset(ann_file=ann, **kwargs)
    bad = tmp_path / 'bad.inter'
    bad.write_text(HEADER + '\na\tb\t5\t1\na\tc\t5\n')
    with pytest.raises(ValueError, match='bad.inter:3'):
        LeaveOneOutSequenceDataset(ann_file=str(bad))
    with pytest.raises(ValueError, match='no interaction is left'):
        LeaveOneOutSequenceDataset(ann_file=ann, min_rating=6)
    with pytest.raises(ValueError, match='evaluation negatives'):
        LeaveOneOutSequenceDataset(ann_file=ann, split='test', num_eval_negatives=50)


def test_collate_and_runner_dataloaders(tmp_path):
    ann = _random_log(tmp_path, seed=3)
    data = dict(type='LeaveOneOutSequenceDataset', ann_file=ann, max_len=7)
    cfg = dict(
        batch_size=4,
        num_workers=0,
        collate_fn=dict(type='mmext.sequence_collate'),
        sampler=dict(type='DefaultSampler', shuffle=False))
    with DefaultScope.overwrite_default_scope('mmext'):
        train = Runner.build_dataloader(
            dict(cfg, dataset=dict(data, split='train', num_train_negatives=1)))
        test = Runner.build_dataloader(
            dict(cfg, dataset=dict(data, split='test', num_eval_negatives=5)))
    batch = next(iter(train))['inputs']
    assert batch['seq'].shape == (4, 7) and batch['target'].shape == (4, 7)
    assert batch['negatives'].shape == (4, 7, 1) and batch['user'].shape == (4, )
    batch = next(iter(test))['inputs']
    assert batch['seq'].shape == (4, 7) and batch['target'].shape == (4, )
    assert isinstance(batch['seen'], list) and len(batch['seen']) == 4
    assert batch['negatives'].shape == (4, 5)
    with pytest.raises(ValueError, match='empty batch'):
        sequence_collate([])


def test_ml100k_default(tmp_path):
    ds = LeaveOneOutSequenceDataset(split='test', max_len=50)
    stats = ds.metainfo['stats']
    assert stats['num_interactions'] == 100000 and stats['num_users'] == 943
    assert ds.metainfo['data_file'].endswith('ml-100k.inter')
    # every user is evaluated; dropping unseen held-out items (the former default) lost 3 test
    # users (and 1 validation user) of 943
    assert len(ds) == 943 and stats['test_targets_unseen'] == 3
    assert ds.metainfo['num_items'] == 1682 and stats['num_train_items'] == 1678
    drop = LeaveOneOutSequenceDataset(split='test', max_len=50, unseen_targets='drop')
    assert len(drop) == 943 - drop.metainfo['stats']['test_targets_unseen'] == 940
    val = LeaveOneOutSequenceDataset(split='val', max_len=50, unseen_targets='drop')
    assert len(val) == 942


def test_per_user_pass_reports_progress(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('MMEXT_PROGRESS_DELAY', '0')  # this toy log would be quiet
    monkeypatch.delenv('MMEXT_PROGRESS', raising=False)
    ann = write(tmp_path, ROWS)
    for split in ('train', 'test'):
        LeaveOneOutSequenceDataset(ann_file=ann, split=split, max_len=6)
        err = capsys.readouterr().err.splitlines()
        users = [line for line in err if line.startswith(f'LeaveOneOutSequenceDataset {split}')]
        assert users[0].startswith(f'LeaveOneOutSequenceDataset {split}: users:   0% (0/4)')
        assert users[-1].startswith(f'LeaveOneOutSequenceDataset {split}: users: 100% (4/4), '
                                    'done in ')
