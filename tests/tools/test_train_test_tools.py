"""tools/train.py flag handling, and the demo pipeline (train -> test -> report) end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools'))
import train as train_tool  # noqa: E402

DEMO = ROOT / 'configs' / 'fcos' / 'fcos_r18_fpn_shapes-128_demo.py'


def merged(*argv):
    args = train_tool.parse_args([str(DEMO), *argv])
    return train_tool.merge_args(Config.fromfile(args.config), args)


def test_defaults_and_work_dir():
    cfg = merged()
    assert cfg.work_dir == os.path.join('./work_dirs', DEMO.stem)
    assert cfg.launcher == 'none' and not cfg.get('resume', False)
    assert merged('--work-dir', '/tmp/x').work_dir == '/tmp/x'


def test_resume_forms():
    auto = merged('--resume')
    assert auto.resume is True and auto.load_from is None
    explicit = merged('--resume', 'ckpt.pth')
    assert explicit.resume is True and explicit.load_from == 'ckpt.pth'


def test_cfg_options_and_auto_scale_lr():
    cfg = merged('--cfg-options', 'train_cfg.max_epochs=2', '--auto-scale-lr')
    assert cfg.train_cfg.max_epochs == 2 and cfg.auto_scale_lr.enable is True


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU-only message')
def test_amp_without_gpu_says_why():
    with pytest.raises(SystemExit, match='needs a GPU'):
        merged('--amp')


def test_auto_scale_lr_needs_base_batch_size(tmp_path):
    cfg_file = tmp_path / 'no_base.py'
    cfg_file.write_text(f"_base_ = '{DEMO}'\nauto_scale_lr = dict(_delete_=True, enable=False)\n")
    args = train_tool.parse_args([str(cfg_file), '--auto-scale-lr'])
    with pytest.raises(SystemExit, match='base_batch_size'):
        train_tool.merge_args(Config.fromfile(args.config), args)


def test_demo_pipeline_end_to_end(tmp_path):
    """What `make demo` runs, on a 32-image set for one epoch: train, test, report."""
    data = tmp_path / 'shapes'
    shapes = dict(num_train=32, num_val=8, img_size=128, seed=3)
    # score_thr=0: one epoch on 32 images predicts little, and CocoMetric skips empty results
    opts = [
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'model.test_cfg.score_thr=0.0',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
        'test_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.persistent_workers=False', 'test_dataloader.persistent_workers=False',
        f'val_evaluator.ann_file={data}/annotations/instances_val.json',
        f'test_evaluator.ann_file={data}/annotations/instances_val.json'
    ]
    for split in ('train', 'val', 'test'):
        opts.append(f'{split}_dataloader.dataset.data_root={data}')
        opts += [f'{split}_dataloader.dataset.shapes_cfg.{k}={v}' for k, v in shapes.items()]
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ['bash',
         str(ROOT / 'tools' / 'run_demo.sh'),
         str(DEMO),
         str(work), '--cfg-options', *opts],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all' in log  # COCO table
    assert (work / 'predictions.png').stat().st_size > 0
    assert (work / 'curves.png').stat().st_size > 0
    metrics = sorted(work.glob('*/*.json'))
    assert metrics, 'tools/test.py wrote no metrics file'
    assert 'coco/bbox_mAP' in json.loads(metrics[-1].read_text())
    assert len(json.loads(
        (data / 'annotations' / 'instances_train.json').read_text())['images']) == 32

    # The same checkpoint evaluated by 2 CPU ranks (gloo): results are gathered across ranks and
    # scored once, so the metrics equal the single-process test's.
    ckpt = (work / 'last_checkpoint').read_text().strip()
    dist = subprocess.run([
        'bash',
        str(ROOT / 'tools' / 'dist_test.sh'),
        str(DEMO), ckpt, '2', '--work-dir',
        str(tmp_path / 'dist'), '--cfg-options', *opts
    ],
                          cwd=ROOT,
                          env=dict(env, PORT='29531', OMP_NUM_THREADS='1'),
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert dist.returncode == 0, (dist.stdout + dist.stderr)[-4000:]
    dist_metrics = json.loads(sorted((tmp_path / 'dist').glob('*/*.json'))[-1].read_text())
    single = json.loads(metrics[-1].read_text())
    assert dist_metrics['coco/bbox_mAP'] == single['coco/bbox_mAP']
    assert dist_metrics['coco/bbox_mAP_50'] == single['coco/bbox_mAP_50']
