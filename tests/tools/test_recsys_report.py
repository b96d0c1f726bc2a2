"""tools/analysis/recsys_report.py on the small real SASRec run (``sasrec_demo_run``): the ranking
curves from its scalars.json, and the popularity breakdown, whose overall numbers must be the
test metrics ``tools/test.py`` reports for the same checkpoint."""
import json
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image
from tool_modules import load_tool, run_tool

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def tool() -> ModuleType:
    return load_tool('tools/analysis/recsys_report.py')


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        assert min(img.size) >= 300


def test_curves_of_the_sasrecrun_tool(tool, sasrec_demo_run, tmp_path: Path) -> None:
    run = sasrec_demo_run
    val_lines = [
        json.loads(line) for line in run.scalars.read_text().splitlines()
        if line.strip() and 'hr@10' in json.loads(line)
    ]
    assert len(val_lines) == 2  # two epochs, validated after each
    curves, unit = tool.load_ranking_curves(run.scalars)
    assert unit == 'epoch'
    assert set(curves) == {'hr@10', 'ndcg@10', 'mrr@10'}
    for key, (steps, values) in curves.items():
        assert steps == [1.0, 2.0] and values == [line[key] for line in val_lines]
    out = tmp_path / 'curves.png'
    run_tool('tools/analysis/recsys_report.py', 'curves', str(run.work_dir), '--out', str(out))
    _assert_png(out)
    assert tool.find_scalars(run.work_dir) == run.scalars


def test_curves_without_ranking_metrics_say_so(tool, tmp_path: Path) -> None:
    scalars = tmp_path / 'scalars.json'
    scalars.write_text('{"loss": 1.0, "epoch": 1, "iter": 1, "step": 1}\n'
                       '{"coco/bbox_mAP": 0.1, "step": 1}\n')
    with pytest.raises(ValueError, match='no ranking metric'):
        tool.plot_ranking_curves([scalars], tmp_path / 'x.png')
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        tool.find_scalars(tmp_path / 'nowhere')


def _test_metrics(work_dir: Path) -> dict:
    """The metrics tools/test.py's LoggerHook dumped to <work_dir>/<timestamp>/<timestamp>.json."""
    found = sorted(work_dir.glob('*/*.json'))
    assert found, f'no test metrics json under {work_dir}'
    return json.loads(found[-1].read_text())


def _target_popularity() -> list:
    """Each evaluated user's test-target popularity, recomputed from ml-100k: per user in time
    order (ties in file order), training = all items but the last two (all of a user with fewer
    than 3), test target = the last item."""
    from mmext.datasets.recsys import ml100k_path
    from mmext.datasets.recsys.sequence_dataset import leave_one_out_sequences

    sequences = leave_one_out_sequences(ml100k_path())['sequences']
    train = Counter(str(t) for s in sequences for t in (s[:-2] if len(s) >= 3 else s))
    return [train[str(s[-1])] for s in sequences if len(s) >= 3]


def test_popularity_breakdown_equals_the_test_metric(sasrec_demo_run, tmp_path: Path) -> None:
    run = sasrec_demo_run
    test_dir = tmp_path / 'test'
    run_tool('tools/test.py', str(run.config), str(run.checkpoint), '--work-dir', str(test_dir),
             '--cfg-options', *run.cfg_options)
    reported = _test_metrics(test_dir)
    out = tmp_path / 'pop'
    stdout = run_tool('tools/analysis/recsys_report.py', 'popularity', str(run.config),
                      str(run.checkpoint), '--out-dir', str(out), '--buckets', '4', '--cfg-options',
                      *run.cfg_options)
    assert 'popularity' in stdout and 'all' in stdout
    _assert_png(out / 'popularity_breakdown.png')
    result = json.loads((out / 'popularity_breakdown.json').read_text())

    # the overall numbers are those of tools/test.py (a separate process, same checkpoint)
    for key in ('hr@10', 'ndcg@10', 'mrr@10'):
        assert result['overall'][key] == pytest.approx(reported[key], abs=1e-9)
        weighted = sum(b[key] * b['num_events'] for b in result['buckets'])
        assert weighted / result['overall']['num_events'] == pytest.approx(reported[key], abs=1e-9)
    assert result['overall']['num_events'] == reported['num_events'] == 943

    # buckets: disjoint increasing popularity ranges holding the users whose test target's
    # training popularity (recomputed from the raw file) falls in them
    popularity = _target_popularity()
    assert len(popularity) == 943
    buckets = result['buckets']
    assert 2 <= len(buckets) <= 4
    assert buckets[0]['low'] == min(popularity) and buckets[-1]['high'] == max(popularity)
    for prev, nxt in zip(buckets, buckets[1:]):
        assert prev['high'] + 1 == nxt['low']
    for b in buckets:
        assert b['num_events'] == sum(b['low'] <= p <= b['high'] for p in popularity)
