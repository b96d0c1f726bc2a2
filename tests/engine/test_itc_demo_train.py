"""The ITC demo config end to end: a few training iterations (default suite) and the full run with
its accuracy target (slow)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / 'configs' / 'itc' / 'itc_vit-tiny_digits_demo.py'


def test_demo_config_trains_a_few_iterations(tmp_path):
    from mmext.engine import Runner
    cfg = Config.fromfile(str(DEMO))
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.batch_size = 16
    cfg.train_dataloader.dataset.indices = 48  # 3 iterations
    cfg.val_dataloader.dataset.indices = 40
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 10  # evaluated below through runner.test()
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10)
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    model = runner.model
    ema_before = model.image_proj_m.weight.detach().clone()
    online_before = model.image_proj.weight.detach().clone()
    runner.train()
    # the ALBEF warm-up set alpha = 0.4 * i / 3 before iteration i = 0, 1, 2
    assert model.loss_itc.alpha == pytest.approx(0.4 * 2 / 3)
    # the queue holds every training caption pair seen, the temperature stayed in its range
    assert len(model.loss_itc.queue) == 48
    assert 0.001 <= model.loss_itc.temp.item() <= 0.5
    # the momentum projection moved towards the online one (one EMA step per iteration)
    assert not torch.equal(model.image_proj_m.weight, ema_before)
    assert not torch.equal(model.image_proj.weight, online_before)
    metrics = runner.test()
    for key in ('zeroshot/top1', 'retrieval/i2t_R@1', 'retrieval/i2t_R@5', 'retrieval/t2i_R@1',
                'retrieval/t2i_R@5'):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert metrics['retrieval/i2t_R@5'] >= metrics['retrieval/i2t_R@1']


@pytest.mark.slow
def test_demo_reaches_zero_shot_target(tmp_path):
    """The full demo (`python tools/train.py configs/itc/itc_vit-tiny_digits_demo.py`): >= 90 %
    zero-shot accuracy on the held-out digits (measured numbers in configs/itc/README.md)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    proc = subprocess.run(
        [sys.executable, 'tools/train.py',
         str(DEMO), '--work-dir',
         str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scalars = sorted(tmp_path.glob('*/vis_data/scalars.json'))[-1]
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    final = [r for r in records if 'zeroshot/top1' in r][-1]
    assert final['zeroshot/top1'] >= 90.0, final
    assert final['retrieval/t2i_R@1'] >= 90.0 and final['retrieval/i2t_R@1'] >= 90.0, final
