"""tools/analysis/analyze_logs.py on the scalars.json of real small runs (FCOS, SASRec)."""
import json
import statistics
from pathlib import Path

import pytest
from mmengine.config import Config
from PIL import Image
from tool_modules import load_tool

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis/analyze_logs.py')


def _lines(scalars: Path):
    return [json.loads(line) for line in scalars.read_text().splitlines() if line.strip()]


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.size[0] > 100 and img.size[1] > 100


def test_plot_loss_of_one_run(tool, fcos_demo_run, tmp_path, capsys):
    out = tmp_path / 'plots' / 'loss.png'
    written = tool.main(
        ['plot_curve',
         str(fcos_demo_run.work_dir), '--keys', 'loss', '--out',
         str(out)])
    assert written == out and f'wrote {out}' in capsys.readouterr().out
    _assert_png(out)
    # the plotted points are the training lines' (iter, loss), as the file has them
    run, = tool.load_runs([str(fcos_demo_run.work_dir)])
    series, = tool.collect_series([run], ['loss'])
    expected = [(r['iter'], r['loss']) for r in _lines(fcos_demo_run.scalars) if 'loss' in r]
    assert expected and list(zip(series.xs, series.ys)) == expected
    assert series.phase == 'train'


def test_plot_several_runs_and_keys(tool, fcos_demo_run, sasrec_demo_run, tmp_path):
    # a work dir, a run dir and a scalars.json all name a run
    specs = [str(fcos_demo_run.work_dir), str(sasrec_demo_run.scalars.parents[1])]
    runs = tool.load_runs(specs, legend=['fcos', 'sasrec'])
    assert [r.path for r in runs] == [fcos_demo_run.scalars, sasrec_demo_run.scalars]
    assert tool.load_runs([str(sasrec_demo_run.scalars)])[0].path == sasrec_demo_run.scalars
    out = tool.main([
        'plot_curve', *specs, '--keys', 'loss', 'lr', '--legend', 'fcos', 'sasrec', '--out',
        str(tmp_path / 'two.png')
    ])
    _assert_png(out)
    series = tool.collect_series(runs, ['loss', 'lr'])
    assert [(s.run.label, s.key) for s in series] == [('fcos', 'loss'), ('fcos', 'lr'),
                                                      ('sasrec', 'loss'), ('sasrec', 'lr')]

    # per epoch: training values averaged per epoch, validation metrics at their epoch
    lines = _lines(sasrec_demo_run.scalars)
    metric = next(k for r in lines if 'iter' not in r for k in r if k.startswith('ndcg'))
    sasrec = runs[1]
    loss, ndcg = tool.collect_series([sasrec], ['loss', metric], xaxis='epoch')
    epochs = sorted({r['epoch'] for r in lines if 'loss' in r})
    assert loss.xs == epochs == [1, 2]
    assert loss.ys == pytest.approx(
        [statistics.fmean(r['loss'] for r in lines if r.get('epoch') == e) for e in epochs])
    val = [r for r in lines if metric in r]
    assert ndcg.phase == 'val' and ndcg.xs == [r['step'] for r in val] == [1, 2]
    assert ndcg.ys == [r[metric] for r in val]
    # on the iteration axis, a validation sits at the last logged iteration of its epoch
    ndcg_iter = tool.get_series(sasrec, metric, 'iter')
    assert ndcg_iter.xs == [max(r['iter'] for r in lines if r.get('epoch') == e) for e in (1, 2)]
    _assert_png(
        tool.main([
            'plot_curve', specs[1], '--keys', 'loss', metric, '--xaxis', 'epoch', '--subplots',
            '--out',
            str(tmp_path / 'epochs.png')
        ]))


def test_missing_keys_in_some_lines(tool, fcos_demo_run, tmp_path):
    """A key absent from the first lines (and from validation lines) is plotted where it is."""
    lines = _lines(fcos_demo_run.scalars)
    del lines[0]['loss_bbox']
    path = tmp_path / 'scalars.json'
    path.write_text('\n'.join(json.dumps(r) for r in lines) + '\n')
    series, = tool.collect_series(tool.load_runs([str(path)]), ['loss_bbox'])
    assert series.xs == [r['iter'] for r in lines if 'loss_bbox' in r]
    assert len(series.xs) == len([r for r in lines if 'iter' in r]) - 1


def test_unknown_key_lists_the_keys_that_exist(tool, fcos_demo_run, tmp_path):
    with pytest.raises(SystemExit) as e:
        tool.main([
            'plot_curve',
            str(fcos_demo_run.work_dir), '--keys', 'loss', 'no_such_key', '--out',
            str(tmp_path / 'x.png')
        ])
    keys = sorted({k for r in _lines(fcos_demo_run.scalars) for k in r} - {'step', 'iter', 'epoch'})
    message = str(e.value)
    assert "'no_such_key' in no line of" in message
    assert message.endswith('its keys: ' + ', '.join(keys))
    assert 'loss' in keys and 'coco/bbox_mAP' in keys
    assert not (tmp_path / 'x.png').exists()


def test_cal_train_time_by_hand(tool, sasrec_demo_run, capsys):
    train = [r for r in _lines(sasrec_demo_run.scalars) if 'iter' in r]
    window = Config.fromfile(str(sasrec_demo_run.config)).log_processor.window_size
    assert window == 20

    result, = tool.main(['cal_train_time', str(sasrec_demo_run.work_dir), '--warmup', '0'])
    assert result.window == window and result.num_excluded == 0
    assert result.mean == pytest.approx(statistics.fmean(r['time'] for r in train))
    per_epoch = {e: statistics.fmean(r['time'] for r in train if r['epoch'] == e) for e in (1, 2)}
    assert result.epoch_means == pytest.approx(per_epoch)
    slowest = max(per_epoch, key=per_epoch.get)
    assert result.slowest[0] == slowest and result.fastest[0] == 3 - slowest
    out = capsys.readouterr().out
    assert f'slowest epoch {slowest}, average time is {per_epoch[slowest]:.4f} s/iter' in out
    assert f'average iter time: {result.mean:.4f} s/iter' in out

    # warm-up of 1 iteration: a line's time averages iterations iter-19..iter; keep those
    # whose window starts after iteration 1
    result, = tool.main(['cal_train_time', str(sasrec_demo_run.scalars), '--warmup', '1'])
    kept = [r for r in train if r['iter'] - window + 1 > 1]
    assert 0 < len(kept) < len(train)
    assert result.num_excluded == len(train) - len(kept)
    assert result.mean == pytest.approx(statistics.fmean(r['time'] for r in kept))
    assert result.first_iter == kept[0]['iter']
    assert (f'warm-up: the first 1 iterations excluded: {len(train) - len(kept)} of '
            f'{len(train)} logged lines dropped') in capsys.readouterr().out


def test_cal_train_time_too_short_for_the_warmup(tool, fcos_demo_run):
    """The FCOS run has 2 iterations: every logged time averages the first one."""
    with pytest.raises(SystemExit, match='lower --warmup'):
        tool.main(['cal_train_time', str(fcos_demo_run.work_dir)])
    result, = tool.main(['cal_train_time', str(fcos_demo_run.work_dir), '--warmup', '0'])
    times = [r['time'] for r in _lines(fcos_demo_run.scalars) if 'iter' in r]
    assert result.mean == pytest.approx(statistics.fmean(times))
    assert result.epoch_means == pytest.approx({1: statistics.fmean(times)})
