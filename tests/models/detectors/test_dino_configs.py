"""DINO configs: every shipped config builds with mmext's parts and without downloads; the shapes
demo trains through tools/train.py's path (fast: one short epoch on a tiny generated set; slow:
the full demo, which must reach 0.45 bbox mAP)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

from mmext.models.dense_heads import DINOHead
from mmext.models.detectors import DINO
from mmext.models.layers import CdnQueryGenerator, DinoTransformerDecoder
from mmext.models.task_modules import HungarianAssigner
from mmext.registry import MODELS

ROOT = Path(__file__).resolve().parents[3]
CFG_DIR = ROOT / 'configs' / 'dino'
DEMO = CFG_DIR / 'dino-4scale_r18_shapes-128_demo.py'
COCO_12E = CFG_DIR / 'dino-4scale_r50_8xb2-12e_coco.py'
COCO_24E = CFG_DIR / 'dino-4scale_r50_8xb2-24e_coco.py'


@pytest.mark.parametrize('path', [COCO_12E, COCO_24E, DEMO], ids=lambda p: p.stem)
def test_configs_build_with_mmext_parts(path):
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmext'
    if path != DEMO:  # no download while building
        cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmext'):
        model = MODELS.build(cfg.model)
    assert type(model) is DINO and type(model.bbox_head) is DINOHead
    assert type(model.decoder) is DinoTransformerDecoder
    assert type(model.dn_query_generator) is CdnQueryGenerator
    assert type(model.bbox_head.assigner) is HungarianAssigner
    with DefaultScope.overwrite_default_scope('mmdet'):  # the datasets' (inherited) scope
        for loader in (cfg.train_dataloader, cfg.val_dataloader):
            assert len(Compose(loader.dataset.pipeline).transforms) >= 4
    if path == DEMO:
        model.eval()
        with torch.no_grad():
            cls, boxes = model._forward(torch.randn(1, 3, 128, 128))
        assert cls.shape == (3, 1, 50, 4) and boxes.shape == (3, 1, 50, 4)
    else:  # mmdet's recipe, unchanged
        assert model.num_queries == 900 and model.bbox_head.num_classes == 80
        assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=1e-4)
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
        assert cfg.train_cfg.max_epochs == (12 if path == COCO_12E else 24)
        assert cfg.param_scheduler[0].milestones == ([11] if path == COCO_12E else [20])
        assert model.dn_query_generator.num_dn_queries == 100


def _small_opts(tmp_path):
    data = tmp_path / 'shapes'
    opts = [
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=1',
        'train_dataloader.batch_size=4', 'val_dataloader.batch_size=4',
        f'val_evaluator.ann_file={data}/annotations/instances_val.json'
    ]
    for split in ('train', 'val'):
        opts += [
            f'{split}_dataloader.num_workers=0', f'{split}_dataloader.persistent_workers=False',
            f'{split}_dataloader.dataset.data_root={data}',
            f'{split}_dataloader.dataset.shapes_cfg.num_train=8',
            f'{split}_dataloader.dataset.shapes_cfg.num_val=4'
        ]
    return opts


def test_demo_trains_one_short_epoch(tmp_path):
    sys.path.insert(0, str(ROOT / 'tools'))
    try:
        import train as train_tool
    finally:
        sys.path.pop(0)
    args = train_tool.parse_args(
        [str(DEMO), '--work-dir',
         str(tmp_path / 'work'), '--cfg-options', *_small_opts(tmp_path)])
    cfg = train_tool.merge_args(Config.fromfile(args.config), args)
    cfg.setdefault('runner_type', 'mmext.Runner')
    # a name of its own: a runner of the same config built in the same second would share its
    # visualizer (and so its scalars.json) with this one
    cfg.experiment_name = f'dino_demo_one_epoch_{tmp_path.name}'
    from mmext.registry import RUNNERS
    scopes = dict(DefaultScope._instance_dict)  # the Runner registers a global default scope
    try:
        runner = RUNNERS.build(cfg)
        runner.train()
    finally:
        DefaultScope._instance_dict = scopes
    # the run's own MessageHub (scalars.json may be another runner's when a test before this one
    # shares the process)
    logged = runner.message_hub.log_scalars
    losses = logged['train/loss'].data[0]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert {'train/dn_loss_cls', 'train/enc_loss_cls', 'train/d0.loss_bbox'} <= set(logged)
    assert 'val/coco/bbox_mAP' in logged  # validated with mmdet's CocoMetric


@pytest.mark.slow
def test_demo_reaches_045_map(tmp_path):
    """The full demo via tools/train.py (about half an hour on 2 CPU cores): >= 0.45 bbox mAP."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '2'))
    proc = subprocess.run(
        [sys.executable, 'tools/train.py',
         str(DEMO), '--work-dir',
         str(tmp_path / 'work')],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3 * 3600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    maps = [float(m) for m in re.findall(r'coco/bbox_mAP: ([0-9.]+)', log)]
    assert maps and maps[-1] >= 0.45, maps
