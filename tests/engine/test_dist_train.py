"""`bash tools/dist_train.sh CONFIG 2` on a CPU-only machine: gloo, DDP without device ids, SyncBN
reverted, and both ranks end with the same parameters."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
HELPERS = ROOT / 'tests' / 'helpers'

CONFIG = """
custom_imports = dict(imports=['mmext', 'toy_model'], allow_failed_imports=False)
default_scope = 'mmext'
model = dict(type='ToyRegressor', sync_bn=True)
train_dataloader = dict(
    dataset=dict(type='ToyDataset'), batch_size=4, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True))
train_cfg = dict(by_epoch=False, max_iters=3)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False))
custom_hooks = [dict(type='RecordLossHook', out_dir='{out}')]
env_cfg = dict(dist_cfg=dict(backend='nccl'))  # a GPU config: must still run on CPU (gloo)
randomness = dict(seed=0)
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU-only code path')
def test_dist_train_two_cpu_ranks(tmp_path):
    cfg = tmp_path / 'toy_dist.py'
    cfg.write_text(textwrap.dedent(CONFIG.format(out=tmp_path)))
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        PORT='29517',
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join([str(HELPERS), str(ROOT)]))
    proc = subprocess.run([
        'bash',
        str(ROOT / 'tools' / 'dist_train.sh'),
        str(cfg), '2', '--work-dir',
        str(tmp_path / 'work')
    ],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in (0, 1)]
    assert [r['world_size'] for r in ranks] == [2, 2]
    assert all(r['wrapper'] == 'MMDistributedDataParallel' for r in ranks)
    # Each rank saw its own shard of every batch ...
    assert ranks[0]['losses'] != ranks[1]['losses']
    # ... yet all-reduced gradients kept the replicas identical after every step.
    for key, value in ranks[0]['params'].items():
        if 'running' in key or 'num_batches' in key:
            continue  # BN statistics are per process once SyncBN is reverted
        torch.testing.assert_close(value, ranks[1]['params'][key], rtol=0, atol=0, msg=key)
    assert (tmp_path / 'work' / 'iter_3.pth').is_file()
