"""mmext.utils.progress: the reports of long jobs (lines off a terminal, a bar on one, nothing
on ranks other than 0 or when switched off), and the benchmarks' timing loop that uses them."""
import io
import math
import re
import sys
import time
from pathlib import Path

import pytest
import torch

from mmext.utils.progress import (PROGRESS_DELAY_ENV, PROGRESS_ENV, Progress, announce_metrics,
                                  file_stage, progress_delay, progress_mode, stage, track)

ROOT = Path(__file__).resolve().parents[2]
_PCT = re.compile(r': +(\d+)% \((\d+)/(\d+)')


class FakeTTY(io.StringIO):

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in (PROGRESS_ENV, PROGRESS_DELAY_ENV, 'RANK', 'OMPI_COMM_WORLD_RANK', 'SLURM_PROCID'):
        monkeypatch.delenv(key, raising=False)


def percents(text: str) -> list:
    return [tuple(map(int, m.groups())) for m in map(_PCT.search, text.splitlines()) if m]


def test_lines_mode_is_bounded_and_ends_at_100_percent():
    out = io.StringIO()  # not a terminal: lines
    with Progress(1000, 'job', file=out, delay=0) as progress:
        assert progress.mode == 'lines'
        for _ in range(1000):
            progress.update()
    lines = out.getvalue().splitlines()
    assert len(lines) <= 100 / 10 + 1  # one per 10 %, and the final one
    seen = percents(out.getvalue())
    assert seen[0] == (0, 0, 1000) and seen[-1] == (100, 1000, 1000)
    assert [p for p, _, _ in seen] == sorted(p for p, _, _ in seen)
    assert {p for p, _, _ in seen} <= set(range(0, 101, 10))
    assert lines[-1].startswith('job: 100% (1000/1000), done in ')


@pytest.mark.parametrize('step', [10, 25, 12.5, 33, 7])
def test_lines_bound_holds_for_every_total(step):
    for total in range(1, 250):
        out = io.StringIO()
        with Progress(total, 'job', file=out, delay=0, step_percent=step, heartbeat=None) as p:
            for _ in range(total):
                p.update()
        seen = [pct for pct, _, _ in percents(out.getvalue())]
        assert len(seen) <= math.ceil(100 / step) + 1, (total, seen)
        assert seen[0] == 0 and seen[-1] == 100 and seen == sorted(set(seen)), (total, seen)


def test_lines_step_percent_and_jumps():
    out = io.StringIO()
    with Progress(10, 'job', file=out, delay=0, step_percent=25) as progress:
        progress.update(7)  # one jump over two steps gives one line
        progress.update(3)
    assert [p for p, _, _ in percents(out.getvalue())] == [0, 70, 100]


def test_quick_job_within_the_delay_prints_nothing():
    out = io.StringIO()
    for _ in track(range(100), 'quick', file=out, delay=30):
        pass
    with stage('quick stage', file=out, delay=30):
        pass
    assert out.getvalue() == ''


def test_report_appears_once_the_delay_has_passed():
    out = io.StringIO()
    with Progress(4, 'slow', file=out, delay=0.3) as progress:
        for _ in range(4):
            time.sleep(0.25)
            progress.update()
    seen = percents(out.getvalue())
    assert seen and seen[0][0] > 0  # shown after it started
    assert seen[-1] == (100, 4, 4)


def test_heartbeat_during_a_slow_step():
    out = io.StringIO()
    with Progress(2, 'slow', file=out, delay=0, heartbeat=0.5) as progress:
        time.sleep(1.6)  # one step taking longer than the heartbeat
        progress.update(2)
    zero = [line for line in out.getvalue().splitlines() if '0% (0/2)' in line]
    assert len(zero) >= 2  # the start and at least one heartbeat without progress


def test_stage_lines_and_failure():
    out = io.StringIO()
    with stage('loading x', file=out, delay=0):
        pass
    assert out.getvalue().splitlines()[0] == 'loading x...'
    assert out.getvalue().splitlines()[-1].startswith('loading x: done in ')
    out = io.StringIO()
    with pytest.raises(KeyError):
        with stage('loading y', file=out, delay=0):
            raise KeyError('boom')
    assert out.getvalue().splitlines()[-1].startswith('loading y: failed after ')


def test_stage_heartbeat():
    out = io.StringIO()
    with stage('waiting', file=out, delay=0, heartbeat=0.4):
        time.sleep(1.2)
    assert any('still running' in line for line in out.getvalue().splitlines())


def test_file_stage_names_the_size(tmp_path):
    path = tmp_path / 'w.bin'
    path.write_bytes(b'\0' * 3 * 2**20)
    out = io.StringIO()
    with file_stage('loading', str(path), file=out, delay=0):
        pass
    assert out.getvalue().splitlines()[0] == f'loading {path} (3.0 MiB)...'


def test_failing_job_says_where_it_stopped():
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with Progress(10, 'job', file=out, delay=0) as progress:
            progress.update(4)
            raise RuntimeError
    assert out.getvalue().splitlines()[-1].startswith('job:  40% (4/10), stopped in ')


def test_track_counts_items_and_an_abandoned_loop_stops():
    out = io.StringIO()
    assert list(track(iter(range(5)), 'gen', total=5, file=out, delay=0)) == list(range(5))
    assert percents(out.getvalue())[-1] == (100, 5, 5)
    out = io.StringIO()
    items = track(range(10), 'gen', file=out, delay=0)
    for i in items:
        if i == 2:
            break
    items.close()
    assert 'stopped' in out.getvalue().splitlines()[-1]


def test_unknown_total_and_bytes():
    out = io.StringIO()
    with Progress(None, 'reading', file=out, delay=0) as progress:
        progress.update(7)
    assert out.getvalue().splitlines()[-1].startswith('reading: 7, done in ')
    out = io.StringIO()
    with Progress(2**21, 'reading f', unit='B', file=out, delay=0) as progress:
        progress.update_to(2**21)
    assert out.getvalue().splitlines()[-1].startswith('reading f: 100% (2.0/2.0 MiB), done in ')


def test_bar_on_a_terminal():
    out = FakeTTY()
    assert progress_mode(out) == 'bar'
    with Progress(50, 'draw', file=out, delay=0) as progress:
        for _ in range(50):
            progress.update()
    text = out.getvalue()
    assert text.endswith('\n') and text.count('\n') == 1  # one line, redrawn in place
    redraws = text.split('\r')
    assert redraws[0].startswith('draw [')
    assert all(r.startswith('draw [') for r in redraws[1:])  # the description stays in front
    assert '50/50' in redraws[-1]


def test_env_switches_and_ranks(monkeypatch):
    out = FakeTTY()
    monkeypatch.setenv(PROGRESS_ENV, 'lines')
    assert progress_mode(out) == 'lines'
    for value in ('off', '0', 'False'):
        monkeypatch.setenv(PROGRESS_ENV, value)
        assert progress_mode(out) == 'off'
    monkeypatch.setenv(PROGRESS_ENV, 'sometimes')
    with pytest.raises(ValueError, match=PROGRESS_ENV):
        progress_mode(out)
    monkeypatch.setenv(PROGRESS_ENV, 'auto')
    monkeypatch.setenv(PROGRESS_DELAY_ENV, '0.5')
    assert progress_delay() == 0.5
    monkeypatch.setenv(PROGRESS_DELAY_ENV, 'soon')
    with pytest.raises(ValueError, match=PROGRESS_DELAY_ENV):
        progress_delay()


@pytest.mark.parametrize('key', ['RANK', 'OMPI_COMM_WORLD_RANK', 'SLURM_PROCID'])
def test_other_ranks_print_nothing(monkeypatch, key):
    monkeypatch.setenv(key, '1')
    for out in (io.StringIO(), FakeTTY()):
        assert progress_mode(out) == 'off'
        for _ in track(range(20), 'job', file=out, delay=0):
            pass
        with stage('step', file=out, delay=0):
            pass
        assert out.getvalue() == ''
    monkeypatch.setenv(key, '0')
    assert progress_mode(io.StringIO()) == 'lines'


def test_off_prints_nothing(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, 'off')
    out = FakeTTY()
    with Progress(3, 'job', file=out, delay=0) as progress:
        progress.update(3)
    assert out.getvalue() == ''


def test_announce_metrics_reports_the_computation(capsys, monkeypatch):
    from mmengine.evaluator import Evaluator

    from mmext.evaluation.metrics import RankingMetric
    monkeypatch.setenv(PROGRESS_DELAY_ENV, '0')
    evaluator = announce_metrics(Evaluator([RankingMetric(topk=(1, ))]))
    announce_metrics(evaluator)  # idempotent: one report, not two
    scores = torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.1, 0.2]])
    evaluator.process([dict(scores=s, target=1) for s in scores])
    metrics = evaluator.evaluate(2)
    assert metrics['recall@1'] == 0.5
    err = capsys.readouterr().err.splitlines()
    assert err[0] == 'computing RankingMetric over 2 results...'
    assert err[1].startswith('computing RankingMetric over 2 results: done in ')
    assert len(err) == 2


def test_benchmark_timing_reports_progress(capsys, monkeypatch):
    monkeypatch.setenv(PROGRESS_DELAY_ENV, '0')
    monkeypatch.syspath_prepend(str(ROOT / 'tools' / 'benchmark'))
    sys.modules.pop('timing', None)
    from timing import interleaved
    calls = []
    samples = interleaved({
        'a': lambda: calls.append('a'),
        'b': lambda: calls.append('b')
    },
                          repeats=3,
                          warmup=1)
    assert calls == ['a', 'b'] * 4 and [len(s) for s in samples.values()] == [3, 3]
    err = capsys.readouterr().err
    assert percents(err)[-1] == (100, 8, 8)
    assert 'timing a, b (1 warm-up + 3 rounds)' in err


def test_threading_benchmark_reports_each_training_run(capsys, monkeypatch):
    """bench_threading.py captures each run's log: it says which run is going on."""
    monkeypatch.setenv(PROGRESS_DELAY_ENV, '0')
    monkeypatch.syspath_prepend(str(ROOT / 'tools' / 'benchmark'))
    sys.modules.pop('bench_threading', None)
    import bench_threading
    monkeypatch.setattr(bench_threading, 'run_once',
                        lambda *args: dict(iter_times=[5, 5, 5, 0.3, 0.5], wall=1.0, cpu=1.0))
    args = bench_threading.parse_args(['--preset', 'tiny', '--variants', 'default', '--load', '0'])
    rows = bench_threading.measure(args)
    assert [r['median'] for r in rows] == [0.4]  # the median after the --warmup 3 iterations
    err = capsys.readouterr().err.splitlines()
    assert err[0] == 'tiny load=0 default: training run...'
    assert err[1].startswith('tiny load=0 default: training run: done in ')
