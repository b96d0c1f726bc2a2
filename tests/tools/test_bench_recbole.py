"""The pieces of tools/benchmark/bench_recbole.py that decide what the comparison means: the
file both sides read, and the paired per-user difference with its standard error."""
import sys
from pathlib import Path

import numpy as np
import pytest

from mmext.datasets.recsys import LeaveOneOutSequenceDataset
from mmext.datasets.recsys.sequence_dataset import leave_one_out_sequences

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools' / 'benchmark'))
import bench_recbole  # noqa: E402

sys.path.pop(0)


def test_written_split_reads_back_in_the_same_order(tmp_path):
    # equal timestamps keep file order; the rank timestamps must preserve exactly that order
    src = tmp_path / 'src.inter'
    src.write_text('user_id:token\titem_id:token\ttimestamp:float\n'
                   'u1\ta\t5\nu2\tx\t1\nu1\tb\t5\nu1\tc\t2\nu2\ty\t1\nu2\tz\t0\n'
                   'u1\td\t9\nu3\tb\t1\nu3\tx\t2\nu3\ta\t3\nu3\tc\t4\nu3\te\t5\n')
    raw = leave_one_out_sequences(str(src))
    assert [list(s) for s in raw['sequences']] == [list('cabd'), list('zxy'), list('bxace')]
    shifted = [s[:-1] for s in raw['sequences']]
    path = bench_recbole.write_recbole_split(str(tmp_path), 'w', raw['users'], shifted)
    back = leave_one_out_sequences(path)
    assert back['users'] == raw['users'] == ['u1', 'u2', 'u3']
    assert [list(s) for s in back['sequences']] == [list('cab'), list('zx'), list('bxac')]

    def targets(ds):
        tokens = ds.metainfo['item_map']['tokens']
        return {raw['users'][s['user']]: tokens[s['target'] - 1] for s in ds.data_list}

    # with one event removed per user, the test targets are the original validation targets
    # (u2 is left with 2 events: too short to evaluate)
    orig_val = targets(LeaveOneOutSequenceDataset(ann_file=str(src), split='val', max_len=4))
    new_test = targets(LeaveOneOutSequenceDataset(ann_file=path, split='test', max_len=4))
    assert orig_val == {'u1': 'b', 'u2': 'x', 'u3': 'c'}
    assert new_test == {'u1': 'b', 'u3': 'c'}


def _history(ranks_ours, ranks_ref):
    return {
        side: [{
            'valid': {
                'ranks': r
            }
        } for r in epochs]
        for side, epochs in (('mmext', ranks_ours), ('recbole', ranks_ref))
    }


def test_paired_difference_by_hand():
    # NDCG@10 gain of rank r is 1 / log2(r + 2); rank >= 10 scores 0
    ours = [{'a': [0, 0], 'b': [20, 0], 'c': [1, 0]}, {'a': [0, 0], 'b': [3, 0], 'c': [1, 0]}]
    ref = [{
        'a': [1, 0],
        'b': [0, 0],
        'c': [1, 0],
        'extra': [0, 0]
    }, {
        'a': [1, 0],
        'b': [0, 0],
        'c': [1, 0],
        'extra': [0, 0]
    }]
    out = bench_recbole.paired_difference(_history(ours, ref), 'valid', 'ndcg', range(2))
    g = lambda r: 1 / np.log2(r + 2)  # noqa: E731
    diff = np.array([g(0) - g(1), (0 + g(3)) / 2 - g(0), 0.0])  # users a, b, c
    assert out['users'] == 3  # 'extra' is scored by one side only
    assert out['diff'] == pytest.approx(diff.mean())
    assert out['se'] == pytest.approx(diff.std(ddof=1) / np.sqrt(3))
    assert out['mmext'] - out['recbole'] == pytest.approx(out['diff'])


def test_check_ranks_rejects_ranks_that_do_not_reproduce_the_metric():
    good = {'ranks': {'a': [0, 0], 'b': [12, 0]}, 'ndcg@10': 0.5}
    bench_recbole.check_ranks(good, 'valid')
    with pytest.raises(AssertionError, match='NDCG@10 from per-user ranks'):
        bench_recbole.check_ranks(dict(good, **{'ndcg@10': 0.4}), 'valid')


def test_recorded_recbole_replays_only_a_matching_run(tmp_path):
    import argparse
    import json
    args = dict(
        models=['sasrec'],
        max_len=50,
        batch_targets=2048,
        lr=1e-3,
        dropout=0.5,
        seed=2020,
        holdout_shift=0,
        epochs=2)
    epochs = [{
        split: {
            'ndcg@10': 0.01 * (e + 1),
            'split': split
        }
        for split in ('valid', 'test')
    } for e in range(3)]
    saved = dict(
        args=args,
        results=[
            dict(
                model='SASRec',
                info=dict(recbole=dict(train_targets=7)),
                times=dict(recbole=dict(cpu_epochs=[3., 2., 1.], wall_epochs=[6., 5., 4.])),
                history=dict(recbole=epochs, mmext=[]))
        ])
    path = tmp_path / 'run.json'
    path.write_text(json.dumps(saved))
    ref = bench_recbole.RecordedRecBole(str(path), argparse.Namespace(**args), 'SASRec')
    assert ref.info == dict(train_targets=7)
    for e in range(2):
        ref.train_epoch()
        assert ref.last['cpu'] == 3. - e and ref.last['wall'] == 6. - e
        assert ref.ask('test') == epochs[e]['test']
    with pytest.raises(ValueError, match=r"other RecBole settings .*'seed': \(2020, 2021\)"):
        bench_recbole.RecordedRecBole(
            str(path), argparse.Namespace(**dict(args, seed=2021)), 'SASRec')
    with pytest.raises(ValueError, match='3 recorded epochs, 4 asked for'):
        bench_recbole.RecordedRecBole(
            str(path), argparse.Namespace(**dict(args, epochs=4)), 'SASRec')
    with pytest.raises(ValueError, match='no per-epoch GRU4Rec history'):
        bench_recbole.RecordedRecBole(str(path), argparse.Namespace(**args), 'GRU4Rec')
