"""tools/analysis/benchmark.py on the checkpoints of real small runs (FCOS, SASRec)."""
import ast

import pytest
import torch
from tool_modules import ROOT, load_tool


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis/benchmark.py')


def test_fcos_images_per_second(tool, fcos_demo_run, capsys):
    threads = torch.get_num_threads()
    result = tool.main([
        str(fcos_demo_run.config),
        str(fcos_demo_run.checkpoint), '--num-iters', '3', '--warmup', '1', '--threads', '1',
        '--log-interval', '1', '--cfg-options', *fcos_demo_run.cfg_options
    ])
    out = capsys.readouterr().out
    assert torch.get_num_threads() == threads  # restored for the rest of the process
    # 8 test images in one batch of 16: the loader starts over for every iteration
    assert result.unit == 'images' and result.samples == [8, 8, 8]
    assert result.threads == 1 and result.warmup == 1
    assert len(result.wall) == len(result.cpu) == len(result.data) == 3
    assert all(t > 0 for t in result.wall + result.cpu)
    assert result.throughput == pytest.approx(24 / sum(result.wall))
    assert 'iter 1/4 (warm-up)' in out and 'iter 4/4: median so far' in out
    assert f'images/s: {result.median_throughput:.2f} (median iteration), ' \
        f'{result.throughput:.2f} (all counted iterations)' in out
    assert '3 iterations counted after 1 warm-up, 24 images, torch threads: 1' in out


def test_sasrec_sequences_per_second(tool, sasrec_demo_run, capsys):
    result = tool.main([
        str(sasrec_demo_run.config),
        str(sasrec_demo_run.checkpoint), '--num-iters', '2', '--warmup', '1', '--threads', '1',
        '--cfg-options', *sasrec_demo_run.cfg_options
    ])
    # ml-100k's 943 users in test batches of 256
    assert result.unit == 'sequences' and result.samples == [256, 256]
    assert 'sequences/s' in capsys.readouterr().out


@pytest.mark.parametrize('script', ['tools/analysis/benchmark.py', 'tools/analysis/get_flops.py'])
def test_threading_defaults_come_before_torch(script):
    """As tools/train.py: process_defaults is imported before anything that loads torch; only
    what puts tools/ on sys.path (sys, pathlib) comes earlier."""
    tree = ast.parse((ROOT / script).read_text())
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [n.names[0].name if isinstance(n, ast.Import) else n.module for n in imports]
    assert names.index('process_defaults') == 2 and set(names[:2]) == {'sys', 'pathlib'}
