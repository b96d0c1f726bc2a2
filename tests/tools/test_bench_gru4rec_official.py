"""The pieces of tools/benchmark/bench_gru4rec_official.py that decide what the comparison means:
the files the official code reads (the same sessions, events and order as our split) and the
hyper-parameters both sides get."""
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / 'tools' / 'benchmark'
sys.path.insert(0, str(BENCH))
import bench_gru4rec_official  # noqa: E402
from gru4rec_official import ours  # noqa: E402

sys.path.pop(0)


@pytest.fixture
def args(tmp_path):
    (tmp_path / 'gru4rec_pytorch.py').write_text('')  # parse_args only checks that it exists
    return bench_gru4rec_official.parse_args(
        ['--official-repo',
         str(tmp_path), '--batch-size', '16', '--negatives', '64'])


def read_tsv(path):
    rows = [line.split('\t') for line in Path(path).read_text().splitlines()]
    assert rows[0] == ['SessionId', 'ItemId', 'Time']
    return np.array([[int(float(v)) for v in r] for r in rows[1:]])


def test_written_sessions_are_our_split(args, tmp_path):
    from mmext.registry import DATASETS
    work = tmp_path / 'work'
    work.mkdir()
    split = ours.write_official_split(args, str(work))
    cfg = ours._config(args, str(work), 0)
    for name, loader in (('train', cfg.train_dataloader), ('test', cfg.test_dataloader)):
        ds = DATASETS.build(loader.dataset)
        rows = read_tsv(split[name])
        sessions, items, times = rows.T
        # the same events, session by session, in the same order
        np.testing.assert_array_equal(items, ds.items.numpy())
        np.testing.assert_array_equal(np.flatnonzero(np.diff(sessions)) + 1, ds.offsets[1:-1])
        # the official iterator re-sorts unless sessions ascend and times never go back
        assert (np.diff(sessions) >= 0).all()
        same = np.diff(sessions) == 0
        assert (np.diff(times)[same] >= 0).all()
        # ... and it orders sessions by their first event's time: ours are already in that order
        assert (np.diff(times[np.r_[0, np.flatnonzero(np.diff(sessions)) + 1]]) >= 0).all()
        assert split[f'{name}_predictions'] == len(items) - ds.num_sessions
    # the documented ml-100k protocol (configs/gru4rec/README.md)
    assert (split['train_predictions'], split['test_predictions']) == (89411, 7117)


def test_hyper_parameters_map_key_by_key(args):
    params = dict(kv.split('=') for kv in ours.official_params(args).split(','))
    options = ours._cfg_options(args)
    assert params['batch_size'] == '16' == str(options['train_dataloader.batch_size'])
    assert params['n_sample'] == '64' == str(options['model.num_negatives'])
    assert params['constrained_embedding'] == 'True' and options['model.embedding'] == 'shared'
    pairs = {
        'layers': 'model.hidden_sizes',
        'logq': 'model.logq',
        'dropout_p_embed': 'model.dropout_p_embed',
        'dropout_p_hidden': 'model.dropout_p_hidden',
        'learning_rate': 'optim_wrapper.optimizer.lr',
        'momentum': 'optim_wrapper.optimizer.momentum',
        'sample_alpha': 'model.sample_alpha',
        'n_epochs': 'train_cfg.max_epochs',
    }
    for official, key in pairs.items():
        value = options[key][0] if isinstance(options[key], tuple) else options[key]
        assert float(params[official]) == float(value), official
    # every official key of the run is in the printed mapping
    mapped = {m[0].split('=')[0] for m in ours.MAPPING}
    assert set(params) <= mapped


def test_ratio_standard_error():
    r, se = bench_gru4rec_official._ratio([2.0, 2.2, 1.8], [1.0, 1.0, 1.0])
    assert r == pytest.approx(2.0)
    assert se == pytest.approx(2.0 * (0.2 / np.sqrt(3)) / 2.0)
